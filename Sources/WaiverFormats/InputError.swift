import Foundation
import WaiverCore

/// A problem with an input file, located as precisely as we can: `file:line: subject: message`.
public struct InputError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    /// What the problem is about, e.g. a policy id or a configuration key.
    public var subject: String?
    public var message: String

    public init(file: String, line: Int? = nil, subject: String? = nil, message: String) {
        self.file = file.clipped(300)
        self.line = line
        self.subject = subject
        self.message = message
    }

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let subject { s += "\(subject.clipped()): " }
        return (s + message).clipped(String.maxMessage)
    }
}

/// Every problem found in a set of inputs, reported at once.
public struct InputErrors: Error, CustomStringConvertible {
    public var errors: [InputError]
    public init(_ errors: [InputError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// Reading input files: size-bounded, with text encodings normalized to UTF-8.
public enum InputFile {
    /// The largest input read into memory (SARIF reports, policy files, anything from a pipe): 2 GiB.
    public static let maxBytes = 2 << 30
    /// The largest plan file: 16 GiB. A file that large is mapped, never read into the process's
    /// memory, and read once from start to end.
    public static let maxMappedBytes = 16 << 30

    /// Reads a file's bytes, memory-mapped when possible.
    public static func read(_ path: String, maxBytes: Int = InputFile.maxBytes) throws(InputError) -> Data {
        // `-` is standard input; a pipe, a FIFO or /dev/stdin (process substitution gives /dev/fd/N)
        // is read as a stream, with the same bound, since it has no size to check first.
        let streamBytes = min(maxBytes, InputFile.maxBytes)
        if path == "-" { return try stream(FileHandle.standardInput, name: "stdin", maxBytes: streamBytes) }
        var st = stat()
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFIFO || (st.st_mode & S_IFMT) == S_IFCHR {
            guard let h = FileHandle(forReadingAtPath: path) else { throw InputError(file: path, message: "cannot open for reading") }
            return try stream(h, name: path, maxBytes: streamBytes)
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw InputError(file: path, message: "no such file")
        }
        if isDir.boolValue { throw InputError(file: path, message: "is a directory, not a file") }
        // The size of what the path names (a symbolic link is followed, as when it is opened).
        let size = Int(st.st_size)
        if size > maxBytes {
            throw InputError(file: path, message: "file is \(size) bytes, over the limit of \(maxBytes)")
        }
        if size >= 1 << 20, let mapped = map(path, size: size) { return mapped }
        if size > streamBytes {
            throw InputError(file: path, message: "file is \(size) bytes, over the limit of \(streamBytes) for a file that cannot be mapped")
        }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path), options: [.mappedIfSafe])
        } catch {
            throw InputError(file: path, message: "cannot read: \(error.localizedDescription)")
        }
    }

    /// A regular file of a mebibyte or more mapped read-only (Foundation on Linux reads `.mappedIfSafe` files
    /// into fresh memory): a plan of gigabytes costs page cache, not the process's own memory, and
    /// is never copied. Nil when it cannot be mapped; the caller then reads it.
    static func map(_ path: String, size: Int) -> Data? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        // The size checked against the limit is the size mapped: a file grown since is read as it was.
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size) == size else { return nil }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { return nil }
        _ = madvise(p, size, MADV_SEQUENTIAL)
        return Data(bytesNoCopy: p, count: size, deallocator: .custom { p, n in munmap(p, n) })
    }

    /// Reads a stream to its end, refusing more than `maxBytes` and an empty one.
    static func stream(_ h: FileHandle, name: String, maxBytes: Int) throws(InputError) -> Data {
        var out = Data()
        while true {
            let chunk: Data?
            do { chunk = try h.read(upToCount: 1 << 20) } catch { throw InputError(file: name, message: "cannot read: \(error.localizedDescription)") }
            guard let chunk, !chunk.isEmpty else { break }
            out.append(chunk)
            if out.count > maxBytes { throw InputError(file: name, message: "more than \(maxBytes) bytes, over the limit") }
        }
        if out.isEmpty { throw InputError(file: name, message: "nothing was read (an empty input)") }
        return out
    }

    /// Normalizes text to UTF-8 without a byte-order mark: UTF-8 with BOM, UTF-16 LE/BE with BOM
    /// (what PowerShell's `>` writes), and BOM-less UTF-16 recognised by its zero bytes.
    public static func utf8(_ data: Data, file: String) throws(InputError) -> Data {
        let b0 = data.count > 0 ? data[data.startIndex] : 0
        let b1 = data.count > 1 ? data[data.startIndex + 1] : 0
        let b2 = data.count > 2 ? data[data.startIndex + 2] : 0
        func decode(_ body: Data, _ encoding: String.Encoding, _ name: String) throws(InputError) -> Data {
            guard body.count % 2 == 0, let s = String(data: body, encoding: encoding) else {
                throw InputError(file: file, message: "invalid \(name) text")
            }
            return Data(s.utf8)
        }
        if b0 == 0xEF, b1 == 0xBB, b2 == 0xBF { return data.dropFirst(3) }
        if b0 == 0xFF, b1 == 0xFE { return try decode(data.dropFirst(2), .utf16LittleEndian, "UTF-16LE") }
        if b0 == 0xFE, b1 == 0xFF { return try decode(data.dropFirst(2), .utf16BigEndian, "UTF-16BE") }
        if data.count >= 2, b0 != 0, b1 == 0 { return try decode(data, .utf16LittleEndian, "UTF-16LE") }
        if data.count >= 2, b0 == 0, b1 != 0 { return try decode(data, .utf16BigEndian, "UTF-16BE") }
        return data
    }
}
