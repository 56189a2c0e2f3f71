import Testing

@testable import StandbyCore

@Suite("Sizes as the command line and the status page print them")
struct ByteCountTests {
    @Test func eachUnitStartsAtItsPowerOf1024() {
        #expect(ByteCount.text(0) == "0 B")
        #expect(ByteCount.text(1023) == "1023 B")
        #expect(ByteCount.text(1024) == "1.0 KiB")
        #expect(ByteCount.text(50_000) == "48.8 KiB")
        #expect(ByteCount.text(32 << 20) == "32.0 MiB")
        #expect(ByteCount.text((1 << 30) - 1) == "1024.0 MiB")
        #expect(ByteCount.text(1 << 30) == "1.00 GiB")
        #expect(ByteCount.text(2 << 40) == "2.00 TiB")
    }
}
