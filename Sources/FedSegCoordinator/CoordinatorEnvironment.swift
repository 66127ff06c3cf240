import FedSegCrypto
import FedSegProtocol
import Foundation
import SwiftProtobuf

/// The coordinator's long-term keys, shared read-only with request handlers so that envelopes
/// are opened concurrently, outside the round state machine.
public final class CoordinatorKeys: Sendable {
    public let identity: NodeIdentity

    public init(identity: consuming NodeIdentity) {
        self.identity = identity
    }

    /// Everything the coordinator publishes: the payload and its Ed25519 signature, serialized.
    func publication(_ kind: Fedseg_V1_SignedPublication.Kind, payload: Data) throws -> [UInt8] {
        try Fedseg_V1_SignedPublication.with {
            $0.kind = kind
            $0.payload = payload
            $0.signature = Data(identity.signing.signature(for: payload))
        }.serializedBytes()
    }
}

/// Wall-clock time in Unix seconds: round deadlines travel as Unix milliseconds, so the state
/// machine reads this rather than `Date()`, and tests move it by hand.
public protocol WallClock: Sendable {
    func now() -> Double
}

public struct SystemWallClock: WallClock {
    public init() {}
    public func now() -> Double { Date().timeIntervalSince1970 }
}

/// A clock that moves only when told to (state-machine tests: deadlines without sleeping).
public final class ManualWallClock: WallClock, @unchecked Sendable {
    private let lock = NSLock()
    private var seconds: Double

    public init(_ start: Double = 1_800_000_000) { seconds = start }
    public func now() -> Double { lock.withLock { seconds } }
    public func advance(by delta: Double) { lock.withLock { seconds += delta } }
}
