// liblzma (xz) for the NBDCompressionFilters module. The header is Debian's liblzma-dev.
#ifndef NBD_CLZMA_SHIM_H
#define NBD_CLZMA_SHIM_H

#include <lzma.h>

#endif
