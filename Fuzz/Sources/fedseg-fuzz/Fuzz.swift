import CFuzzDriver
import FedSegCrypto
import FedSegProtocol
import Foundation

/// Fixed keys and a fixed plan: the fuzzer explores inputs, not key generation.
private enum Fixture {
    static let coordinator = KeyAgreement.PrivateKey()
    static let client = KeyAgreement.PrivateKey()
    static let plan: Fedseg_V1_RoundPlan = {
        var plan = Fedseg_V1_RoundPlan()
        plan.protocolVersion = fedsegProtocolVersion
        plan.runID = "run"
        plan.round = 1
        plan.phase = .clustering
        plan.k = 2
        plan.dimension = 3
        plan.centroids = [0, 0, 0, 1, 1, 1]
        plan.clipNorm = 1
        plan.noiseMultiplier = 1
        plan.sumStd = 1
        plan.countStd = 1
        plan.privacyMode = .local
        plan.samplingRate = 1
        plan.delta = 1e-6
        plan.minParticipants = 1
        plan.sumScale = 65_536
        plan.countScale = 65_536
        plan.integerSigma = 100_000
        return plan
    }()
}

/// SwiftPM links an executable's entry point as `<module>_main`; hand control to libFuzzer there.
@_cdecl("fedseg_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzOne)
}

private func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    fuzz(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

func fuzz(_ bytes: [UInt8]) {
    // Decoder and validation on every message type.
    if let update = try? MessageCodec.decode(Fedseg_V1_ClientUpdate.self, from: bytes) { _ = try? update.validate(against: Fixture.plan) }
    if let plan = try? MessageCodec.decode(Fedseg_V1_RoundPlan.self, from: bytes) { _ = try? plan.validate() }
    if let recommendation = try? MessageCodec.decode(Fedseg_V1_RecommendationUpdate.self, from: bytes) {
        _ = try? recommendation.validate(against: Fixture.plan)
    }
    if let histogram = try? MessageCodec.decode(Fedseg_V1_StartHistogram.self, from: bytes) {
        _ = try? histogram.validate(against: Fixture.plan)
    }
    if let enroll = try? MessageCodec.decode(Fedseg_V1_EnrollRequest.self, from: bytes) { _ = try? enroll.validate() }
    _ = try? MessageCodec.decode(Fedseg_V1_SignedPublication.self, from: bytes)
    _ = try? MessageCodec.decode(Fedseg_V1_SegmentModel.self, from: bytes)
    // The envelope parser and opener.
    _ = try? Envelope.peek(bytes)
    _ = try? Envelope.open(bytes, recipient: Fixture.coordinator, senderPublicKey: Fixture.client.publicKey)
}
