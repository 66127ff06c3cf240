import FedSegCrypto
import FedSegMath
import FedSegProtocol
import Foundation
import SwiftProtobuf
import Testing

func samplePlan(k: UInt32 = 3, d: UInt32 = 4, phase: Fedseg_V1_Phase = .clustering) -> Fedseg_V1_RoundPlan {
    var plan = Fedseg_V1_RoundPlan()
    plan.protocolVersion = fedsegProtocolVersion
    plan.runID = "run-1"
    plan.round = 7
    plan.phase = phase
    plan.k = k
    plan.dimension = d
    plan.centroids = (0..<Int(k * d)).map { Float($0) / 10 }
    plan.clipNorm = 1
    plan.noiseMultiplier = 1.2
    plan.sumStd = 1.3
    plan.countStd = 5
    plan.privacyMode = .local
    plan.samplingRate = 1
    plan.deadlineUnixMs = 1_800_000_000_000
    plan.minParticipants = 2
    plan.embedderID = "all-MiniLM-L6-v2"
    plan.delta = 1e-6
    plan.maxItemsPerUser = 20
    plan.catalogSize = 50
    plan.catalogItems = phase == .recommendation ? (0..<50).map { "item-\($0)" } : []
    plan.sumScale = 65536
    plan.countScale = 4096
    plan.integerSigma = 80_000
    return plan
}

func sampleUpdate(for plan: Fedseg_V1_RoundPlan) -> Fedseg_V1_ClientUpdate {
    var update = Fedseg_V1_ClientUpdate()
    update.runID = plan.runID
    update.round = plan.round
    update.words = (0..<Int(plan.k * plan.dimension + plan.k)).map { Int64($0) * 70_000 - 200_000 }
    return update
}

@Suite("Wire messages")
struct MessageTests {
    @Test("every message round-trips through its bytes")
    func roundTrips() throws {
        let plan = samplePlan()
        #expect(try MessageCodec.decode(Fedseg_V1_RoundPlan.self, from: MessageCodec.encode(plan)) == plan)
        let update = sampleUpdate(for: plan)
        #expect(try MessageCodec.decode(Fedseg_V1_ClientUpdate.self, from: MessageCodec.encode(update)) == update)
        var enroll = Fedseg_V1_EnrollRequest()
        enroll.protocolVersion = 1
        enroll.token = "t0k3n"
        enroll.clientID = "c-1"
        enroll.signingPublicKey = Data(repeating: 1, count: 32)
        enroll.kxPublicKey = Data(repeating: 2, count: 32)
        #expect(try MessageCodec.decode(Fedseg_V1_EnrollRequest.self, from: MessageCodec.encode(enroll)) == enroll)
        var response = Fedseg_V1_EnrollResponse()
        response.clientID = "c-1"
        response.coordinatorSigningKey = Data(repeating: 3, count: 32)
        response.coordinatorKxKey = Data(repeating: 4, count: 32)
        #expect(try MessageCodec.decode(Fedseg_V1_EnrollResponse.self, from: MessageCodec.encode(response)) == response)
        var decline = Fedseg_V1_Decline()
        decline.runID = "run-1"
        decline.round = 7
        decline.reason = "budget exhausted for 3 users"
        #expect(try MessageCodec.decode(Fedseg_V1_Decline.self, from: MessageCodec.encode(decline)) == decline)
        var recommendation = Fedseg_V1_RecommendationUpdate()
        recommendation.runID = "run-1"
        recommendation.round = 9
        recommendation.counts = [-3, 0, 7, 1 << 40]
        #expect(try MessageCodec.decode(Fedseg_V1_RecommendationUpdate.self, from: MessageCodec.encode(recommendation)) == recommendation)
        var model = Fedseg_V1_SegmentModel()
        model.runID = "run-1"
        model.version = 3
        model.catalogSize = 50
        var segment = Fedseg_V1_Segment()
        segment.id = 0
        segment.items = [4, 2]
        segment.scores = [0.5, 0.25]
        model.segments = [segment]
        model.global = segment
        #expect(try MessageCodec.decode(Fedseg_V1_SegmentModel.self, from: MessageCodec.encode(model)) == model)
        var error = Fedseg_V1_ErrorResponse()
        error.code = .replay
        error.message = "already accepted"
        #expect(try MessageCodec.decode(Fedseg_V1_ErrorResponse.self, from: MessageCodec.encode(error)) == error)
    }

    @Test("a recommendation update has no unknown-items count: an unbounded exact count has no place on the wire")
    func noUnknownItems() throws {
        // Field 4 (the former unknown_items, varint 2): a decoder today keeps it as unknown bytes.
        let bytes: [UInt8] = [0x0A, 0x01, 0x72, 0x10, 0x01, 0x20, 0x02]
        let decoded = try Fedseg_V1_RecommendationUpdate(serializedBytes: bytes)
        #expect(decoded.runID == "r" && decoded.round == 1)
        #expect(!decoded.unknownFields.data.isEmpty, "field 4 is not part of RecommendationUpdate")
        let descriptor = String(describing: Fedseg_V1_RecommendationUpdate._protobuf_nameMap)
        #expect(!descriptor.contains("unknown_items"))
    }

    @Test("a valid plan and update pass validation")
    func valid() throws {
        let plan = samplePlan()
        try plan.validate()
        try sampleUpdate(for: plan).validate(against: plan)
        try samplePlan(phase: .recommendation).validate()
    }

    @Test("bad plans are refused with the field named")
    func badPlans() {
        var plan = samplePlan()
        plan.protocolVersion = 1
        #expect(throws: ProtocolError.unsupportedVersion(1)) { try plan.validate() }
        // A local clustering round without its fixed-point grid: nothing to noise with.
        plan = samplePlan()
        plan.integerSigma = 0
        #expect(throws: ProtocolError.invalidField("integer_sigma", "must be positive and finite in a local clustering round")) { try plan.validate() }
        plan = samplePlan()
        plan.centroids.removeLast()
        #expect(throws: ProtocolError.self) { try plan.validate() }
        plan = samplePlan()
        plan.centroids[3] = .nan
        #expect(throws: ProtocolError.invalidField("centroids", "must be finite")) { try plan.validate() }
        plan = samplePlan()
        plan.samplingRate = 0
        #expect(throws: ProtocolError.invalidField("sampling_rate", "must be in (0, 1]")) { try plan.validate() }
        plan = samplePlan()
        plan.k = 0
        #expect(throws: ProtocolError.self) { try plan.validate() }
        plan = samplePlan(phase: .recommendation)
        plan.catalogSize = 0
        #expect(throws: ProtocolError.self) { try plan.validate() }
        plan = samplePlan(phase: .recommendation)
        plan.catalogItems.removeLast()
        #expect(throws: ProtocolError.invalidField("catalog_items", "has 49 ids, expected 50")) { try plan.validate() }
        // Centred sums are for clustering rounds only.
        plan = samplePlan()
        plan.centered = true
        #expect(throws: Never.self) { try plan.validate() }
        plan = samplePlan(phase: .recommendation)
        plan.centered = true
        #expect(throws: ProtocolError.invalidField("centered", "is for clustering rounds only")) { try plan.validate() }
        // The global row is for recommendation rounds only, and adds a row to the histogram.
        plan = samplePlan()
        plan.globalRow = true
        #expect(throws: ProtocolError.invalidField("global_row", "is for recommendation rounds only")) { try plan.validate() }
        plan = samplePlan(phase: .recommendation)
        plan.globalRow = true
        #expect(throws: Never.self) { try plan.validate() }
        #expect(plan.histogramRows == 4 && plan.secAggWidth == 4 * 50)
        var counts = Fedseg_V1_RecommendationUpdate.with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.counts = [Int64](repeating: 0, count: 3 * 50)
        }
        #expect(throws: ProtocolError.invalidField("counts", "has 150 values, expected 200")) { try counts.validate(against: plan) }
        counts.counts = [Int64](repeating: 0, count: 4 * 50)
        #expect(throws: Never.self) { try counts.validate(against: plan) }
    }

    @Test("updates of the wrong run, round, shape or with non-finite values are refused")
    func badUpdates() {
        let plan = samplePlan()
        var update = sampleUpdate(for: plan)
        update.round = 8
        #expect(throws: ProtocolError.wrongRound(expected: 7, found: 8)) { try update.validate(against: plan) }
        update = sampleUpdate(for: plan)
        update.runID = "other"
        #expect(throws: ProtocolError.wrongRun(expected: "run-1", found: "other")) { try update.validate(against: plan) }
        update = sampleUpdate(for: plan)
        update.words.append(1)
        #expect(throws: ProtocolError.invalidField("words", "has 16 values, expected k x dimension + k = 15")) { try update.validate(against: plan) }
        update = sampleUpdate(for: plan)
        update.words[0] = 1 << 50
        #expect(throws: ProtocolError.self) { try update.validate(against: plan) }
        #expect(throws: ProtocolError.self) { try sampleUpdate(for: plan).validate(against: samplePlan(phase: .recommendation)) }
    }

    @Test("oversized and undecodable bytes are refused before any field is read")
    func oversizedAndGarbage() {
        var limits = ProtocolLimits()
        limits.maximumMessageBytes = 16
        #expect(throws: ProtocolError.oversized(size: 17, limit: 16)) {
            try MessageCodec.decode(Fedseg_V1_ClientUpdate.self, from: [UInt8](repeating: 0, count: 17), limits: limits)
        }
        #expect(throws: ProtocolError.self) { try MessageCodec.decode(Fedseg_V1_ClientUpdate.self, from: [0xFF, 0xFF, 0xFF]) }
    }

    @Test("random bytes never crash the decoder or the validator")
    func randomBytes() {
        var rng = SeededRandom(seed: 99)
        let plan = samplePlan()
        for _ in 0..<20_000 {
            let length = Int(rng.next(upperBound: UInt64(200)))
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if let update = try? MessageCodec.decode(Fedseg_V1_ClientUpdate.self, from: bytes) {
                _ = try? update.validate(against: plan)
            }
            if let decoded = try? MessageCodec.decode(Fedseg_V1_RoundPlan.self, from: bytes) {
                _ = try? decoded.validate()
            }
        }
    }

    @Test("a signed round plan verifies with the pinned key; a forged one does not")
    func signedPublication() throws {
        let coordinator = Signing.PrivateKey()
        let mallory = Signing.PrivateKey()
        let payload = try MessageCodec.encode(samplePlan())
        var publication = Fedseg_V1_SignedPublication()
        publication.kind = .roundPlan
        publication.payload = Data(payload)
        publication.signature = Data(coordinator.signature(for: payload))
        let received = try MessageCodec.decode(Fedseg_V1_SignedPublication.self, from: MessageCodec.encode(publication))
        #expect(coordinator.publicKey.isValidSignature(Array(received.signature), for: received.payload))
        var forged = received
        forged.signature = Data(mallory.signature(for: payload))
        #expect(!coordinator.publicKey.isValidSignature(Array(forged.signature), for: forged.payload))
        var altered = received
        var plan = try MessageCodec.decode(Fedseg_V1_RoundPlan.self, from: Array(received.payload))
        plan.noiseMultiplier = 0.01
        altered.payload = Data(try MessageCodec.encode(plan))
        #expect(!coordinator.publicKey.isValidSignature(Array(altered.signature), for: altered.payload))
    }
}
