// libbz2 (bzip2) for the NBDCompressionFilters module. The header is Debian's libbz2-dev.
#ifndef NBD_CBZIP2_SHIM_H
#define NBD_CBZIP2_SHIM_H

#include <bzlib.h>

#endif
