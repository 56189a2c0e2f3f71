/// One problem found in a topology file, at a place in it.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible, Codable {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    /// `site.yaml:LINE:COL: message`, the form editors and CI annotations understand.
    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// A position in a topology file, kept on model values so that later checks (references,
/// cycles, readiness findings) can point at the line that declared the thing.
public struct SourceLocation: Sendable, Hashable, Codable {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public static let unknown = SourceLocation(line: 1, column: 1)
}
