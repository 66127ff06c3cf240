internal import CSodium

/// The libsodium library itself: initialisation and version.
public enum Sodium {
    private static let initialized: Bool = sodium_init() >= 0

    /// libsodium must be initialised once; `sodium_init` is idempotent and thread-safe.
    static func ensureInitialized() {
        precondition(initialized, "libsodium failed to initialise")
    }

    public static var version: String {
        String(cString: sodium_version_string())
    }
}
