internal import COpenBLAS

/// The x86 features that decide which OpenBLAS kernel this CPU can run.
///
/// Built from raw CPUID/XGETBV registers so the decision can be tested on any register values.
/// A feature counts only when both the CPU has it and the OS saves its registers (XCR0).
public struct CPUFeatures: Sendable, Equatable, Codable {
    public var sse2: Bool
    public var avx: Bool
    public var fma: Bool
    public var avx2: Bool
    public var avx512f: Bool
    public var avx512dq: Bool
    public var avx512bw: Bool
    public var avx512vl: Bool
    /// The CPUID leaves were readable (false on non-x86 machines).
    public var cpuidAvailable: Bool

    public static let none = CPUFeatures(
        sse2: false, avx: false, fma: false, avx2: false, avx512f: false, avx512dq: false, avx512bw: false,
        avx512vl: false, cpuidAvailable: false
    )

    public init(
        sse2: Bool, avx: Bool, fma: Bool, avx2: Bool, avx512f: Bool, avx512dq: Bool, avx512bw: Bool,
        avx512vl: Bool, cpuidAvailable: Bool = true
    ) {
        self.sse2 = sse2
        self.avx = avx
        self.fma = fma
        self.avx2 = avx2
        self.avx512f = avx512f
        self.avx512dq = avx512dq
        self.avx512bw = avx512bw
        self.avx512vl = avx512vl
        self.cpuidAvailable = cpuidAvailable
    }

    /// Decodes CPUID leaf 1 (EDX, ECX), leaf 7 subleaf 0 (EBX) and XCR0.
    /// `xcr0` is ignored (treated as 0) unless leaf 1 ECX reports OSXSAVE.
    public init(leaf1EDX: UInt32, leaf1ECX: UInt32, leaf7EBX: UInt32, xcr0: UInt64) {
        func bit(_ value: UInt32, _ index: UInt32) -> Bool { value & (1 << index) != 0 }
        let osxsave = bit(leaf1ECX, 27)
        let xcr0 = osxsave ? xcr0 : 0
        // XCR0 bit 1: SSE (XMM) state, bit 2: AVX (YMM upper halves),
        // bits 5-7: AVX-512 opmask, ZMM upper halves of 0-15, ZMM16-31.
        let osAVX = xcr0 & 0b110 == 0b110
        let osAVX512 = osAVX && xcr0 & 0b1110_0000 == 0b1110_0000
        self.init(
            sse2: bit(leaf1EDX, 26),
            avx: osAVX && bit(leaf1ECX, 28),
            fma: osAVX && bit(leaf1ECX, 12),
            avx2: osAVX && bit(leaf7EBX, 5),
            avx512f: osAVX512 && bit(leaf7EBX, 16),
            avx512dq: osAVX512 && bit(leaf7EBX, 17),
            avx512bw: osAVX512 && bit(leaf7EBX, 30),
            avx512vl: osAVX512 && bit(leaf7EBX, 31)
        )
    }

    /// The features of the CPU this process runs on.
    public static func current() -> CPUFeatures {
        var eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0
        guard fedseg_cpuid(0, 0, &eax, &ebx, &ecx, &edx) != 0 else { return .none }
        let maxLeaf = eax
        guard maxLeaf >= 1, fedseg_cpuid(1, 0, &eax, &ebx, &ecx, &edx) != 0 else { return .none }
        let leaf1EDX = edx
        let leaf1ECX = ecx
        var leaf7EBX: UInt32 = 0
        if maxLeaf >= 7, fedseg_cpuid(7, 0, &eax, &ebx, &ecx, &edx) != 0 {
            leaf7EBX = ebx
        }
        let osxsave = leaf1ECX & (1 << 27) != 0
        let xcr0 = osxsave ? fedseg_xgetbv0() : 0
        return CPUFeatures(leaf1EDX: leaf1EDX, leaf1ECX: leaf1ECX, leaf7EBX: leaf7EBX, xcr0: xcr0)
    }

    /// Short names of the features present, for reports.
    public var names: [String] {
        var result: [String] = []
        if sse2 { result.append("sse2") }
        if avx { result.append("avx") }
        if fma { result.append("fma") }
        if avx2 { result.append("avx2") }
        if avx512f { result.append("avx512f") }
        if avx512dq { result.append("avx512dq") }
        if avx512bw { result.append("avx512bw") }
        if avx512vl { result.append("avx512vl") }
        return result
    }
}
