// GnuTLS for the NBDTLS module (sessions) and NBDEncryptionFilters (ciphers, hashes, PBKDF2). The
// headers are those of Debian's libgnutls28-dev.
#ifndef NBD_CGNUTLS_SHIM_H
#define NBD_CGNUTLS_SHIM_H

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

// The send side of a session. GnuTLS's own writes do not pass MSG_NOSIGNAL, so a peer that vanished
// would raise SIGPIPE and kill a program that embeds the server without ignoring it; these do. While
// `may_block` is 0 they also pass MSG_DONTWAIT, so a full socket fails with EAGAIN instead of
// waiting (GnuTLS keeps the encrypted record and sends it on the next call). One thread sends at a
// time (the session's only sender).
typedef struct nbd_gnutls_outbound {
    gnutls_session_t session;
    int descriptor;
    int may_block;
} nbd_gnutls_outbound;

static inline ssize_t nbd_gnutls_vec_push(gnutls_transport_ptr_t pointer, const giovec_t *vectors, int count) {
    nbd_gnutls_outbound *outbound = (nbd_gnutls_outbound *)pointer;
    struct msghdr message = {0};
    message.msg_iov = (struct iovec *)vectors;
    message.msg_iovlen = (size_t)count;
    ssize_t sent = sendmsg(outbound->descriptor, &message, MSG_NOSIGNAL | (outbound->may_block ? 0 : MSG_DONTWAIT));
    if (sent < 0) gnutls_transport_set_errno(outbound->session, errno);
    return sent;
}

// Receive-side read-ahead. GnuTLS asks its pull function for exactly what it needs next: a record's
// 5-byte header, then its body, so every record costs two recv calls. This pull function receives
// as much as has arrived, up to `capacity`, and hands it out from there. While `may_block` is 0 it
// never waits: with nothing staged it fails with EAGAIN, so the session only decrypts records that
// have already arrived. One thread receives at a time (the session's only receiver).
typedef struct nbd_gnutls_inbound {
    gnutls_session_t session;
    int descriptor;
    int may_block;
    unsigned char *buffer;
    size_t capacity;
    size_t start;
    size_t end;
} nbd_gnutls_inbound;

static inline ssize_t nbd_gnutls_buffered_pull(gnutls_transport_ptr_t pointer, void *data, size_t size) {
    nbd_gnutls_inbound *inbound = (nbd_gnutls_inbound *)pointer;
    if (inbound->start == inbound->end) {
        if (!inbound->may_block) {
            gnutls_transport_set_errno(inbound->session, EAGAIN);
            return -1;
        }
        ssize_t received = recv(inbound->descriptor, inbound->buffer, inbound->capacity, 0);
        if (received < 0) {
            // EAGAIN here is the socket's receive timeout; EINTR makes GnuTLS return INTERRUPTED.
            gnutls_transport_set_errno(inbound->session, errno);
            return -1;
        }
        if (received == 0) return 0;
        inbound->start = 0;
        inbound->end = (size_t)received;
    }
    size_t count = inbound->end - inbound->start;
    if (count > size) count = size;
    memcpy(data, inbound->buffer + inbound->start, count);
    inbound->start += count;
    return (ssize_t)count;
}

// Called by GnuTLS when a timeout applies (the handshake's): staged bytes are ready at once;
// otherwise wait on the socket.
static inline int nbd_gnutls_buffered_pull_timeout(gnutls_transport_ptr_t pointer, unsigned int milliseconds) {
    nbd_gnutls_inbound *inbound = (nbd_gnutls_inbound *)pointer;
    if (inbound->start < inbound->end || !inbound->may_block) return 1;
    struct pollfd descriptor = {inbound->descriptor, POLLIN, 0};
    int timeout = milliseconds == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)milliseconds;
    int ready;
    do {
        ready = poll(&descriptor, 1, timeout);
    } while (ready < 0 && errno == EINTR);
    return ready;
}

// Sends through `outbound` and receives through `inbound`'s read-ahead, both on one socket.
static inline void nbd_gnutls_transport_set_buffered(
    gnutls_session_t session, nbd_gnutls_inbound *inbound, nbd_gnutls_outbound *outbound) {
    gnutls_transport_set_ptr2(session, (gnutls_transport_ptr_t)inbound, (gnutls_transport_ptr_t)outbound);
    gnutls_transport_set_vec_push_function(session, nbd_gnutls_vec_push);
    gnutls_transport_set_pull_function(session, nbd_gnutls_buffered_pull);
    gnutls_transport_set_pull_timeout_function(session, nbd_gnutls_buffered_pull_timeout);
}

// gnutls_free is a variable holding a function pointer (a macro in some versions).
static inline void nbd_gnutls_free(void *pointer) {
    gnutls_free(pointer);
}

#endif
