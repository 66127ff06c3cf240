/// Bounding one user's contribution: the one clipping rule every release uses.
///
/// The norm is computed in Double, and a clipped vector is scaled to (1 − 10⁻⁶)·C rather than C:
/// Float rounding moves each coordinate by at most 2⁻²⁴ of itself, so the scaled vector's norm,
/// whether kept in Double (the clients' sums) or rounded to Float, is at most C exactly. (A
/// norm computed in Float and a scale of exactly C/‖x‖ left about half of clipped vectors a
/// few ulps above C.)
public enum Clipping {
    /// The relative margin below C a clipped vector is scaled to.
    public static let margin = 1e-6

    /// ‖x‖² of `count` Floats, accumulated in Double.
    @inline(__always)
    public static func normSquared(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var squares = 0.0
        for t in 0..<count { squares += Double(x[t]) * Double(x[t]) }
        return squares
    }

    /// The factor (≤ 1) that brings a vector of squared norm `normSquared` to norm at most C.
    @inline(__always)
    public static func factor(normSquared: Double, clipNorm: Double) -> Double {
        precondition(clipNorm > 0 && clipNorm.isFinite, "clip norm must be positive and finite")
        guard normSquared > clipNorm * clipNorm else { return 1 }
        return clipNorm * (1 - margin) / normSquared.squareRoot()
    }

    /// Scales `vector` in place to L2 norm at most `clipNorm`; returns the factor applied (≤ 1).
    @discardableResult
    public static func clip(_ vector: inout [Float], to clipNorm: Float) -> Double {
        let scale = vector.withUnsafeBufferPointer { v in
            factor(normSquared: v.baseAddress.map { normSquared($0, count: v.count) } ?? 0, clipNorm: Double(clipNorm))
        }
        guard scale < 1 else { return 1 }
        for i in vector.indices { vector[i] = Float(Double(vector[i]) * scale) }
        return scale
    }
}
