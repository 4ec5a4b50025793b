// zlib (gzip) for the NBDCompressionFilters module. The header is Debian's zlib1g-dev.
#ifndef NBD_CZLIB_SHIM_H
#define NBD_CZLIB_SHIM_H

#include <zlib.h>

// inflateInit2 is a macro that passes the header's version and the stream's size; Swift cannot
// call a function-like macro.
static inline int nbd_inflate_init_gzip(z_stream *stream) {
    // 16 + MAX_WBITS: a gzip header and trailer, not a zlib one.
    return inflateInit2(stream, 16 + MAX_WBITS);
}

#endif
