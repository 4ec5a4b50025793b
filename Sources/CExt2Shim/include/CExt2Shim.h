// An io_manager for libext2fs whose "device" is a set of callbacks (into Swift), so that libext2fs
// reads and writes the filesystem image through the filter layer below instead of a file.
//
// libext2fs is opened with dlopen at run time: building needs no e2fsprogs headers and links no
// libext2fs. The io_manager and io_channel layouts libext2fs expects are declared in CExt2Shim.c,
// written from the public ext2_io.h of e2fsprogs 1.47 (they have been stable since 1.42).
#ifndef CEXT2SHIM_H
#define CEXT2SHIM_H

#include <stddef.h>
#include <stdint.h>

/// The storage an io channel reads and writes. Each callback returns 0 or an errno value (which
/// libext2fs reports through com_err as strerror's text).
typedef struct cext2_device {
    /// Passed back to every callback (an unretained reference to the Swift object).
    void *context;
    int (*read)(void *context, uint64_t offset, void *buffer, size_t count);
    int (*write)(void *context, uint64_t offset, const void *buffer, size_t count);
    int (*flush)(void *context);
} cext2_device;

/// struct ext2fs_extent (ext2fs.h): one extent as ext2fs_extent_get returns it.
typedef struct cext2_extent {
    uint64_t physical;
    uint64_t logical;
    uint32_t count;
    uint32_t flags;
} cext2_extent;

/// The io_manager to pass to ext2fs_open (a `struct struct_io_manager *`).
void *cext2_io_manager(void);

/// Writes into `buffer` the device name under which ext2fs_open, given cext2_io_manager(), reaches
/// `device`. `device` must stay valid until the filesystem is closed. Returns 0, or -1 if `size`
/// is too small.
int cext2_device_name(const cext2_device *device, char *buffer, size_t size);

#endif
