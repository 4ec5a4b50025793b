// The io_manager libext2fs calls for an image reached through cext2_device callbacks.
#include "CExt2Shim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// libext2fs' error codes are com_err codes: the table's base plus the code's index in
// lib/ext2fs/ext2_err.et.in.
typedef long cext2_errcode;
#define CEXT2_ERROR_BASE 2133571328L
#define CEXT2_MAGIC_IO_CHANNEL (CEXT2_ERROR_BASE + 5)
#define CEXT2_MAGIC_IO_MANAGER (CEXT2_ERROR_BASE + 7)
#define CEXT2_INVALID_ARGUMENT EINVAL

struct cext2_manager;

// struct struct_io_channel (ext2_io.h): the fields in order, with their C types, so the layout is
// the one libext2fs was compiled with.
typedef struct cext2_channel {
    cext2_errcode magic;
    struct cext2_manager *manager;
    char *name;
    int block_size;
    void *read_error;
    void *write_error;
    int refcount;
    int flags;
    long reserved[14];
    void *private_data;
    void *app_data;
    int align;
} cext2_channel;

// struct struct_io_manager (ext2_io.h). Operations libext2fs checks for NULL (discard, zeroout,
// cache_readahead, get_stats, set_option) are left out: the filesystem then works without them.
typedef struct cext2_manager {
    cext2_errcode magic;
    const char *name;
    cext2_errcode (*open)(const char *name, int flags, cext2_channel **channel);
    cext2_errcode (*close)(cext2_channel *channel);
    cext2_errcode (*set_blksize)(cext2_channel *channel, int blksize);
    cext2_errcode (*read_blk)(cext2_channel *channel, unsigned long block, int count, void *data);
    cext2_errcode (*write_blk)(cext2_channel *channel, unsigned long block, int count, const void *data);
    cext2_errcode (*flush)(cext2_channel *channel);
    cext2_errcode (*write_byte)(cext2_channel *channel, unsigned long offset, int count, const void *data);
    cext2_errcode (*set_option)(cext2_channel *channel, const char *option, const char *arg);
    cext2_errcode (*get_stats)(cext2_channel *channel, void **stats);
    cext2_errcode (*read_blk64)(cext2_channel *channel, unsigned long long block, int count, void *data);
    cext2_errcode (*write_blk64)(cext2_channel *channel, unsigned long long block, int count, const void *data);
    cext2_errcode (*discard)(cext2_channel *channel, unsigned long long block, unsigned long long count);
    cext2_errcode (*cache_readahead)(cext2_channel *channel, unsigned long long block, unsigned long long count);
    cext2_errcode (*zeroout)(cext2_channel *channel, unsigned long long block, unsigned long long count);
    long reserved[14];
} cext2_manager;

static const char cext2_prefix[] = "swift-nbd-ext2:";

static cext2_errcode cext2_open(const char *name, int flags, cext2_channel **channel);

// A count of blocks when positive, of bytes when negative (ext2_io.h's convention).
static int cext2_byte_range(cext2_channel *channel, unsigned long long block, int count, uint64_t *offset, size_t *size) {
    uint64_t block_size = (uint64_t)channel->block_size;
    uint64_t bytes = count < 0 ? (uint64_t)(-(int64_t)count) : (uint64_t)count * block_size;
    if (block_size != 0 && block > UINT64_MAX / block_size) return EINVAL;
    *offset = block * block_size;
    *size = (size_t)bytes;
    return 0;
}

static cext2_errcode cext2_read64(cext2_channel *channel, unsigned long long block, int count, void *data) {
    uint64_t offset;
    size_t size;
    int error = cext2_byte_range(channel, block, count, &offset, &size);
    if (error) return error;
    cext2_device *device = channel->private_data;
    return device->read(device->context, offset, data, size);
}

static cext2_errcode cext2_write64(cext2_channel *channel, unsigned long long block, int count, const void *data) {
    uint64_t offset;
    size_t size;
    int error = cext2_byte_range(channel, block, count, &offset, &size);
    if (error) return error;
    cext2_device *device = channel->private_data;
    return device->write(device->context, offset, data, size);
}

static cext2_errcode cext2_read(cext2_channel *channel, unsigned long block, int count, void *data) {
    return cext2_read64(channel, block, count, data);
}

static cext2_errcode cext2_write(cext2_channel *channel, unsigned long block, int count, const void *data) {
    return cext2_write64(channel, block, count, data);
}

static cext2_errcode cext2_write_byte(cext2_channel *channel, unsigned long offset, int count, const void *data) {
    if (count < 0) return EINVAL;
    cext2_device *device = channel->private_data;
    return device->write(device->context, offset, data, (size_t)count);
}

static cext2_errcode cext2_flush(cext2_channel *channel) {
    cext2_device *device = channel->private_data;
    return device->flush(device->context);
}

static cext2_errcode cext2_set_blksize(cext2_channel *channel, int blksize) {
    if (blksize <= 0) return EINVAL;
    channel->block_size = blksize;
    return 0;
}

static cext2_errcode cext2_close(cext2_channel *channel) {
    if (--channel->refcount > 0) return 0;
    free(channel->name);
    free(channel);
    return 0;
}

static cext2_manager cext2_manager_instance = {
    .magic = CEXT2_MAGIC_IO_MANAGER,
    .name = "swift-nbd-middleware ext2 filter",
    .open = cext2_open,
    .close = cext2_close,
    .set_blksize = cext2_set_blksize,
    .read_blk = cext2_read,
    .write_blk = cext2_write,
    .flush = cext2_flush,
    .write_byte = cext2_write_byte,
    .read_blk64 = cext2_read64,
    .write_blk64 = cext2_write64,
};

static cext2_errcode cext2_open(const char *name, int flags, cext2_channel **channel) {
    void *pointer = NULL;
    size_t prefix = sizeof cext2_prefix - 1;
    if (name == NULL || strncmp(name, cext2_prefix, prefix) != 0 || sscanf(name + prefix, "%p", &pointer) != 1
        || pointer == NULL)
        return EINVAL;
    cext2_channel *made = calloc(1, sizeof *made);
    if (made == NULL) return ENOMEM;
    made->name = strdup(name);
    if (made->name == NULL) {
        free(made);
        return ENOMEM;
    }
    made->magic = CEXT2_MAGIC_IO_CHANNEL;
    made->manager = &cext2_manager_instance;
    made->block_size = 1024;
    made->refcount = 1;
    made->flags = flags;
    made->private_data = pointer;
    *channel = made;
    return 0;
}

void *cext2_io_manager(void) { return &cext2_manager_instance; }

int cext2_device_name(const cext2_device *device, char *buffer, size_t size) {
    int written = snprintf(buffer, size, "%s%p", cext2_prefix, (const void *)device);
    return written < 0 || (size_t)written >= size ? -1 : 0;
}
