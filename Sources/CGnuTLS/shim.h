// GnuTLS for the NBDTLS module. The headers are those of Debian's libgnutls28-dev.
#ifndef NBD_CGNUTLS_SHIM_H
#define NBD_CGNUTLS_SHIM_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

// gnutls_transport_set_int is a function-like macro, which Swift cannot import.
static inline void nbd_gnutls_transport_set_int(gnutls_session_t session, int descriptor) {
    gnutls_transport_set_int2(session, descriptor, descriptor);
}

// gnutls_free is a variable holding a function pointer (a macro in some versions).
static inline void nbd_gnutls_free(void *pointer) {
    gnutls_free(pointer);
}

#endif
