// The few libcurl declarations NBDCurl needs, written here so that building needs no libcurl
// headers and links no libcurl: the library is opened with dlopen at run time and its functions
// are found with dlsym.
//
// curl_easy_setopt and curl_easy_getinfo are C variadic functions. Calling one through a
// non-variadic function pointer is not ABI-correct (the caller must pass arguments the way a
// variadic callee reads them), so Swift calls these trampolines instead: each casts the dlsym'd
// address to the variadic type and passes one argument of the exact type libcurl reads for that
// option (long, a pointer, curl_off_t or a function pointer).
#ifndef CCURLSHIM_H
#define CCURLSHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>

/// libcurl's curl_off_t on the 64-bit Linux targets this package supports.
typedef int64_t ccurl_off_t;

/// The variadic signatures, as libcurl defines them (CURL * is an opaque pointer).
typedef int (*ccurl_setopt_function)(void *handle, int option, ...);
typedef int (*ccurl_getinfo_function)(void *handle, int info, ...);

/// The data callbacks (CURLOPT_WRITEFUNCTION, CURLOPT_HEADERFUNCTION, CURLOPT_READFUNCTION).
typedef size_t (*ccurl_data_callback)(char *data, size_t size, size_t count, void *context);

/// CURLOPT_DEBUGFUNCTION's callback (curl_infotype is an int-sized enum).
typedef int (*ccurl_debug_callback)(void *handle, int type, char *data, size_t size, void *context);

static inline int ccurl_setopt_debug_callback(void *setopt, void *handle, int option, ccurl_debug_callback value) {
    return ((ccurl_setopt_function)setopt)(handle, option, value);
}

static inline int ccurl_setopt_long(void *setopt, void *handle, int option, long value) {
    return ((ccurl_setopt_function)setopt)(handle, option, value);
}

static inline int ccurl_setopt_pointer(void *setopt, void *handle, int option, const void *value) {
    return ((ccurl_setopt_function)setopt)(handle, option, value);
}

static inline int ccurl_setopt_off(void *setopt, void *handle, int option, ccurl_off_t value) {
    return ((ccurl_setopt_function)setopt)(handle, option, value);
}

static inline int ccurl_setopt_callback(void *setopt, void *handle, int option, ccurl_data_callback value) {
    return ((ccurl_setopt_function)setopt)(handle, option, value);
}

static inline int ccurl_getinfo_long(void *getinfo, void *handle, int info, long *value) {
    return ((ccurl_getinfo_function)getinfo)(handle, info, value);
}

static inline int ccurl_getinfo_off(void *getinfo, void *handle, int info, ccurl_off_t *value) {
    return ((ccurl_getinfo_function)getinfo)(handle, info, value);
}

/// Names the calling thread for the kernel (ps -L, top -H, perf, /proc/self/task/TID/comm): prctl
/// is variadic and Glibc's pthread_setname_np is not visible to Swift. At most 15 bytes are kept.
static inline void ccurl_name_current_thread(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

/// curl_multi_setopt is variadic too; NBDCurl sets only long options on a multi handle.
typedef int (*ccurl_multi_setopt_function)(void *multi, int option, ...);

static inline int ccurl_multi_setopt_long(void *setopt, void *multi, int option, long value) {
    return ((ccurl_multi_setopt_function)setopt)(multi, option, value);
}

/// libcurl's CURLMsg, what curl_multi_info_read returns: a message kind (CURLMSG_DONE is 1), the
/// easy handle it is about and, for CURLMSG_DONE, the transfer's CURLcode in a union with a
/// pointer (so the union is pointer-sized and pointer-aligned).
typedef struct {
    int msg;
    void *easy_handle;
    union {
        void *whatever;
        int result;
    } data;
} ccurl_multi_message;

static inline int ccurl_multi_message_result(const ccurl_multi_message *message) {
    return message->data.result;
}

#endif
