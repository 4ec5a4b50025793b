// GnuTLS for the NBDTLS module. The headers are those of Debian's libgnutls28-dev.
#ifndef NBD_CGNUTLS_SHIM_H
#define NBD_CGNUTLS_SHIM_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

// GnuTLS's own writes do not pass MSG_NOSIGNAL, so a peer that vanished would raise SIGPIPE and
// kill a program that embeds the server without ignoring it. These writes do.
static inline ssize_t nbd_gnutls_vec_push(gnutls_transport_ptr_t pointer, const giovec_t *vectors, int count) {
    struct msghdr message = {0};
    message.msg_iov = (struct iovec *)vectors;
    message.msg_iovlen = (size_t)count;
    return sendmsg((int)(intptr_t)pointer, &message, MSG_NOSIGNAL);
}

// Reads and writes `descriptor` directly. (gnutls_transport_set_int is a function-like macro,
// which Swift cannot import.)
static inline void nbd_gnutls_transport_set_int(gnutls_session_t session, int descriptor) {
    gnutls_transport_set_int2(session, descriptor, descriptor);
    gnutls_transport_set_vec_push_function(session, nbd_gnutls_vec_push);
}

// gnutls_free is a variable holding a function pointer (a macro in some versions).
static inline void nbd_gnutls_free(void *pointer) {
    gnutls_free(pointer);
}

#endif
