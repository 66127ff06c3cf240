import Foundation

/// The bytes a client signs with its enrolled Ed25519 key in a distributed round
/// (docs/PROTOCOL.md, "Signed keys and the consistency stage"). Each starts with a domain tag and
/// carries its fields length-prefixed (4-byte big-endian length), integers big-endian, so no
/// two different statements share bytes.
public enum SecAggSigning {
    /// Stage advertise: the two per-round public keys, bound to the run, round and client, so the
    /// coordinator cannot hand neighbours keys of its own.
    public static func advertisement(runID: String, round: UInt64, clientID: String, encryptionKey: Data, maskingKey: Data) -> [UInt8] {
        var bytes = Array("fedseg-secagg-advertise-v2".utf8)
        append(Array(runID.utf8), to: &bytes)
        append(bigEndian(round), to: &bytes)
        append(Array(clientID.utf8), to: &bytes)
        append([UInt8](encryptionKey), to: &bytes)
        append([UInt8](maskingKey), to: &bytes)
        return bytes
    }

    /// Stage consistency: the survivor set the client was shown (sorted, distinct indices).
    public static func survivors(runID: String, round: UInt64, survivors: [UInt32]) -> [UInt8] {
        var bytes = Array("fedseg-secagg-survivors-v2".utf8)
        append(Array(runID.utf8), to: &bytes)
        append(bigEndian(round), to: &bytes)
        append(Array(Set(survivors)).sorted().flatMap { bigEndian(UInt64($0)).suffix(4) }, to: &bytes)
        return bytes
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) } }

    static func append(_ field: [UInt8], to bytes: inout [UInt8]) {
        bytes += bigEndian(UInt64(field.count)).suffix(4)
        bytes += field
    }
}

extension Fedseg_V1_SecAggConsistency {
    public func validate(against plan: Fedseg_V1_RoundPlan) throws {
        guard runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: runID) }
        guard round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: round) }
        guard signature.count == 64 else { throw ProtocolError.invalidField("signature", "must be 64 bytes (Ed25519)") }
    }
}
