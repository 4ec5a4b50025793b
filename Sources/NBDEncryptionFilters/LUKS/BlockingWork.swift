import Dispatch
import NBDCore

/// Runs CPU-bound work that takes seconds (PBKDF2 with a header's calibrated iteration count) on a
/// Dispatch thread, so that it never holds one of the cooperative pool's few threads while other
/// connections wait.
enum BlockingWork {
    /// Runs `work` on a global Dispatch queue and returns its result or error.
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws(NBDError) -> T) async throws(NBDError) -> T {
        let result: Result<T, NBDError> = await withUnsafeContinuation { continuation in
            DispatchQueue.global().async {
                do throws(NBDError) {
                    continuation.resume(returning: .success(try work()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}
