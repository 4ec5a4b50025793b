// Everything in this target is in include/CCurlShim.h (static inline); SwiftPM needs one source file.
#include "CCurlShim.h"
