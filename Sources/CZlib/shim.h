// zlib (gzip) for the NBDCompressionFilters and NBDImageFormatFilters modules. The header is Debian's zlib1g-dev.
#ifndef NBD_CZLIB_SHIM_H
#define NBD_CZLIB_SHIM_H

#include <zlib.h>

// inflateInit2 is a macro that passes the header's version and the stream's size; Swift cannot
// call a function-like macro.
static inline int nbd_inflate_init_gzip(z_stream *stream) {
    // 16 + MAX_WBITS: a gzip header and trailer, not a zlib one.
    return inflateInit2(stream, 16 + MAX_WBITS);
}

// A raw deflate stream (no zlib or gzip wrapper) with a window of 2^windowBits bytes: qcow2's
// compressed clusters (the qcow2dec filter).
static inline int nbd_inflate_init_raw(z_stream *stream, int windowBits) {
    return inflateInit2(stream, -windowBits);
}

#endif
