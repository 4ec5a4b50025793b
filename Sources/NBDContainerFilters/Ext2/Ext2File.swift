import NBDCore
import Synchronization

/// A regular file of the filesystem that connections serve: its inode, size and block map, shared
/// by every connection serving it.
final class Ext2File: Sendable {
    let inode: UInt32
    /// The absolute path the file was opened by, for messages.
    let path: String
    /// The file's size in bytes (the export's size; the filter never changes it).
    let size: UInt64
    /// Changed only when libext2fs allocates blocks for a write.
    let map: LockedValue<Ext2BlockMap>

    init(inode: UInt32, path: String, size: UInt64, map: Ext2BlockMap) {
        self.inode = inode
        self.path = path
        self.size = size
        self.map = LockedValue(map)
    }
}
