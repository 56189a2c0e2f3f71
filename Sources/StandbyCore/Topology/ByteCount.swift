import Foundation

/// Sizes as people read them, in binary units: `512 B`, `48.8 KiB`, `32.0 MiB`, `1.00 GiB`,
/// `2.00 TiB`. One formatter for the command line and the status page, so a set's size reads the
/// same in both.
public enum ByteCount {
    public static func text(_ count: Int64) -> String {
        let value = Double(count)
        if count >= 1 << 40 { return String(format: "%.2f TiB", value / 1_099_511_627_776) }
        if count >= 1 << 30 { return String(format: "%.2f GiB", value / 1_073_741_824) }
        if count >= 1 << 20 { return String(format: "%.1f MiB", value / 1_048_576) }
        if count >= 1 << 10 { return String(format: "%.1f KiB", value / 1024) }
        return "\(count) B"
    }
}
