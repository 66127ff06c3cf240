/// A dense row-major matrix of `Float` in one contiguous buffer.
///
/// Row-major with leading dimension `cols` is what every BLAS call in FedSeg assumes, so a
/// matrix can be handed to `cblas_sgemm` without a copy.
public struct Matrix: Sendable, Equatable {
    public let rows: Int
    public let cols: Int
    public var storage: [Float]

    public init(rows: Int, cols: Int, repeating value: Float = 0) {
        precondition(rows >= 0 && cols >= 0, "Matrix dimensions must be non-negative")
        self.rows = rows
        self.cols = cols
        self.storage = [Float](repeating: value, count: rows * cols)
    }

    public init(rows: Int, cols: Int, storage: [Float]) {
        precondition(rows >= 0 && cols >= 0, "Matrix dimensions must be non-negative")
        precondition(storage.count == rows * cols, "Matrix storage has \(storage.count) values, expected \(rows)x\(cols)")
        self.rows = rows
        self.cols = cols
        self.storage = storage
    }

    /// Builds a matrix from equally long rows.
    public init(rowVectors: [[Float]]) {
        let cols = rowVectors.first?.count ?? 0
        var storage = [Float]()
        storage.reserveCapacity(rowVectors.count * cols)
        for row in rowVectors {
            precondition(row.count == cols, "All rows must have \(cols) columns")
            storage.append(contentsOf: row)
        }
        self.init(rows: rowVectors.count, cols: cols, storage: storage)
    }

    public var count: Int { storage.count }

    public subscript(row: Int, col: Int) -> Float {
        get {
            precondition(row >= 0 && row < rows && col >= 0 && col < cols, "Matrix index out of range")
            return storage[row * cols + col]
        }
        set {
            precondition(row >= 0 && row < rows && col >= 0 && col < cols, "Matrix index out of range")
            storage[row * cols + col] = newValue
        }
    }

    /// A copy of one row.
    public func row(_ index: Int) -> [Float] {
        precondition(index >= 0 && index < rows, "Row \(index) out of range 0..<\(rows)")
        return Array(storage[index * cols..<(index + 1) * cols])
    }

    public mutating func setRow(_ index: Int, to values: some Collection<Float>) {
        precondition(index >= 0 && index < rows, "Row \(index) out of range 0..<\(rows)")
        precondition(values.count == cols, "Row has \(values.count) values, expected \(cols)")
        var offset = index * cols
        for value in values {
            storage[offset] = value
            offset += 1
        }
    }

    /// Rows `range` as a new matrix (one contiguous copy).
    public func rows(_ range: Range<Int>) -> Matrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "Row range out of bounds")
        return Matrix(rows: range.count, cols: cols, storage: Array(storage[range.lowerBound * cols..<range.upperBound * cols]))
    }

    public func transposed() -> Matrix {
        var result = Matrix(rows: cols, cols: rows)
        storage.withUnsafeBufferPointer { source in
            result.storage.withUnsafeMutableBufferPointer { target in
                for r in 0..<rows {
                    for c in 0..<cols {
                        target[c * rows + r] = source[r * cols + c]
                    }
                }
            }
        }
        return result
    }

    /// Euclidean norm of every row.
    public func rowNorms() -> [Float] {
        squaredRowNorms().map { $0.squareRoot() }
    }

    /// Squared Euclidean norm of every row, accumulated in Float with the BLAS dot product.
    public func squaredRowNorms() -> [Float] {
        var result = [Float](repeating: 0, count: rows)
        storage.withUnsafeBufferPointer { buffer in
            result.withUnsafeMutableBufferPointer { out in
                BLAS.squaredRowNorms(buffer.baseAddress!, rows: rows, cols: cols, into: out.baseAddress!)
            }
        }
        return result
    }

    /// Scales every row to unit L2 norm; all-zero rows stay zero.
    public mutating func normalizeRows() {
        let norms = rowNorms()
        let cols = self.cols
        storage.withUnsafeMutableBufferPointer { buffer in
            for r in 0..<rows where norms[r] > 0 {
                BLAS.scale(1 / norms[r], buffer.baseAddress! + r * cols, count: cols)
            }
        }
    }
}
