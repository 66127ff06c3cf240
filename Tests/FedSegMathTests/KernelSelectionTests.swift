import FedSegMath
import Testing

/// CPUID register values as real CPUs report them.
private enum Registers {
    // Leaf 1 EDX: SSE2 (bit 26). Leaf 1 ECX: FMA (12), OSXSAVE (27), AVX (28).
    static let leaf1EDX: UInt32 = 1 << 26
    static let leaf1ECXFull: UInt32 = (1 << 12) | (1 << 27) | (1 << 28)
    // Leaf 7 EBX: AVX2 (5), AVX512F (16), AVX512DQ (17), AVX512BW (30), AVX512VL (31).
    static let leaf7AVX2: UInt32 = 1 << 5
    static let leaf7AVX512: UInt32 = (1 << 5) | (1 << 16) | (1 << 17) | (1 << 30) | (1 << 31)
    static let xcr0AVX512: UInt64 = 0b1110_0111
    static let xcr0AVX: UInt64 = 0b0000_0111
}

@Suite("OpenBLAS kernel selection from CPUID")
struct KernelSelectionTests {
    let avx512CPU = CPUFeatures(
        leaf1EDX: Registers.leaf1EDX, leaf1ECX: Registers.leaf1ECXFull, leaf7EBX: Registers.leaf7AVX512,
        xcr0: Registers.xcr0AVX512
    )
    let avx2CPU = CPUFeatures(
        leaf1EDX: Registers.leaf1EDX, leaf1ECX: Registers.leaf1ECXFull, leaf7EBX: Registers.leaf7AVX2,
        xcr0: Registers.xcr0AVX
    )

    @Test("decodes AVX-512 and AVX2 CPUs")
    func decoding() {
        #expect(avx512CPU.avx512f && avx512CPU.avx512bw && avx512CPU.avx512vl && avx512CPU.avx2 && avx512CPU.fma)
        #expect(avx2CPU.avx2 && avx2CPU.fma && !avx2CPU.avx512f)
        #expect(BLASKernel.bestCore(for: avx512CPU)?.core == "SkylakeX")
        #expect(BLASKernel.bestCore(for: avx2CPU)?.core == "Haswell")
    }

    @Test("AVX-512 without OS support for ZMM state is not AVX-512")
    func osSupportRequired() {
        let cpu = CPUFeatures(
            leaf1EDX: Registers.leaf1EDX, leaf1ECX: Registers.leaf1ECXFull, leaf7EBX: Registers.leaf7AVX512,
            xcr0: Registers.xcr0AVX
        )
        #expect(!cpu.avx512f)
        #expect(cpu.avx2)
        #expect(BLASKernel.bestCore(for: cpu)?.core == "Haswell")
    }

    @Test("without OSXSAVE no AVX state counts, whatever XCR0 says")
    func osxsaveRequired() {
        let cpu = CPUFeatures(
            leaf1EDX: Registers.leaf1EDX, leaf1ECX: Registers.leaf1ECXFull & ~(1 << 27),
            leaf7EBX: Registers.leaf7AVX512, xcr0: Registers.xcr0AVX512
        )
        #expect(!cpu.avx && !cpu.avx2 && !cpu.avx512f)
        #expect(BLASKernel.bestCore(for: cpu) == nil)
    }

    @Test("a Prescott misdetection on an AVX-512 CPU selects SkylakeX")
    func upgradesPrescott() {
        let decision = BLASKernel.decide(cpu: avx512CPU, libraryCore: "Prescott", environment: [:])
        guard case .select(let core, _) = decision else {
            Issue.record("expected a selection, got \(decision)")
            return
        }
        #expect(core == "SkylakeX")
    }

    @Test("an AVX2-only CPU gets Haswell, never SkylakeX")
    func neverOverreaches() {
        let decision = BLASKernel.decide(cpu: avx2CPU, libraryCore: "Prescott", environment: [:])
        guard case .select(let core, _) = decision else {
            Issue.record("expected a selection, got \(decision)")
            return
        }
        #expect(core == "Haswell")
    }

    @Test("a correct detection is kept", arguments: ["SkylakeX", "Cooperlake", "SapphireRapids"])
    func keepsGoodDetection(core: String) {
        #expect(BLASKernel.decide(cpu: avx512CPU, libraryCore: core, environment: [:]).isKeep)
    }

    @Test("a CPU without AVX2 keeps the library's pick")
    func keepsOnOldCPU() {
        #expect(BLASKernel.decide(cpu: .none, libraryCore: "Prescott", environment: [:]).isKeep)
    }

    @Test("the user's OPENBLAS_CORETYPE wins, and a weaker one than the CPU runs says how to get the faster kernel")
    func userSettingWins() {
        let decision = BLASKernel.decide(
            cpu: avx512CPU, libraryCore: "Haswell", environment: ["OPENBLAS_CORETYPE": "Haswell"]
        )
        #expect(decision.isKeep)
        guard case .keep(let reason) = decision else { return }
        #expect(reason.contains("SkylakeX") && reason.contains("unset OPENBLAS_CORETYPE"), "\(reason)")
        let best = BLASKernel.decide(cpu: avx512CPU, libraryCore: "SkylakeX", environment: ["OPENBLAS_CORETYPE": "SkylakeX"])
        guard case .keep(let plain) = best else { Issue.record("a user's choice was overridden"); return }
        #expect(!plain.contains("unset"), "no advice when the user's choice is already the best: \(plain)")
    }

    @Test("FEDSEG_BLAS_KERNEL=off disables selection")
    func offSwitch() {
        #expect(BLASKernel.decide(cpu: avx512CPU, libraryCore: "Prescott", environment: ["FEDSEG_BLAS_KERNEL": "off"]).isKeep)
    }

    @Test("a re-executed process and a failed self-check never loop")
    func noLoops() {
        let reexecuted = ["OPENBLAS_CORETYPE": "SkylakeX", "FEDSEG_BLAS_SELECTED": "reason"]
        #expect(BLASKernel.decide(cpu: avx512CPU, libraryCore: "SkylakeX", environment: reexecuted).isKeep)
        let failed = ["FEDSEG_BLAS_SELECTED": "reason", "FEDSEG_BLAS_FALLBACK": "error 1.0"]
        #expect(BLASKernel.decide(cpu: avx512CPU, libraryCore: "Prescott", environment: failed).isKeep)
    }

    @Test("an explicit FedSeg core is checked against the CPU")
    func explicitCore() {
        let onAVX2 = BLASKernel.decide(cpu: avx2CPU, libraryCore: "Prescott", environment: ["FEDSEG_BLAS_KERNEL": "SkylakeX"])
        #expect(onAVX2.isKeep)
        let onAVX512 = BLASKernel.decide(
            cpu: avx512CPU, libraryCore: "Prescott",
            environment: ["FEDSEG_BLAS_KERNEL": "SkylakeX", "OPENBLAS_CORETYPE": "Prescott"]
        )
        #expect(onAVX512 == .select(core: "SkylakeX", reason: "FEDSEG_BLAS_KERNEL=SkylakeX requested; the CPU supports it"))
        let unknown = BLASKernel.decide(cpu: avx512CPU, libraryCore: "Prescott", environment: ["FEDSEG_BLAS_KERNEL": "Zen"])
        #expect(unknown.isKeep)
    }
}

extension BLASKernel.Decision {
    var isKeep: Bool {
        if case .keep = self { return true }
        return false
    }
}
