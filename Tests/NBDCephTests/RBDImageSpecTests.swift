import NBDCeph
import NBDCore
import NBDTestSupport
import XCTest

/// `image=` as the `rbd` tool writes it: `[POOL/[NAMESPACE/]]IMAGE[@SNAPSHOT]`. No cluster needed.
final class RBDImageSpecTests: XCTestCase {
    func testAnImageAloneIsInPoolRbd() throws {
        let spec = try RBDImageSpec("disk")
        XCTAssertEqual(spec, RBDImageSpec(pool: "rbd", namespace: "", image: "disk", snapshot: nil))
        XCTAssertEqual(spec.description, "rbd/disk")
    }

    func testPoolNamespaceImageAndSnapshotAreSplit() throws {
        XCTAssertEqual(try RBDImageSpec("vms/disk"), RBDImageSpec(pool: "vms", image: "disk"))
        XCTAssertEqual(
            try RBDImageSpec("vms/tenant/disk@before"),
            RBDImageSpec(pool: "vms", namespace: "tenant", image: "disk", snapshot: "before"))
        XCTAssertEqual(try RBDImageSpec("disk@s1").snapshot, "s1")
        XCTAssertEqual(try RBDImageSpec("vms/tenant/disk@before").description, "vms/tenant/disk@before")
    }

    func testMalformedSpecsAreRefusedWithTheExpectedForm() async {
        for text in ["", "/disk", "vms/", "a/b/c/d", "disk@", "disk@a@b", "vms//disk"] {
            let error = await XCTAssertThrowsNBDError(
                { () throws(NBDError) in try RBDImageSpec(text) }, code: .invalidArgument, text)
            XCTAssertTrue(
                error?.message.contains("[POOL/[NAMESPACE/]]IMAGE[@SNAPSHOT]") ?? false,
                "\(text): \(String(describing: error))")
        }
    }
}
