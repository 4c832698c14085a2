/// The candidate closest to `word` by edit distance, when it is close enough to be a likely typo.
public func closestMatch(to word: String, in candidates: [String]) -> String? {
    // A suggestion is for a typo. A longer "word" is not one, and comparing it with every candidate
    // would cost its length times theirs (a megabyte-long policy id in a request took seconds).
    guard word.utf8.count <= maxSuggestedWord else { return nil }
    let w = Array(word.lowercased())
    var best: (String, Int)?
    for c in candidates where c.utf8.count <= maxSuggestedWord {
        let d = editDistance(w, Array(c.lowercased()))
        if best.map({ d < $0.1 }) ?? true { best = (c, d) }
    }
    guard let (name, distance) = best else { return nil }
    let threshold = max(2, min(w.count, name.count) / 3)
    // A candidate that starts with the word, or contains it, is also a good guess ("greater" -> "gt" is not).
    if distance <= threshold { return name }
    if w.count >= 3, name.lowercased().hasPrefix(String(w)) { return name }
    return nil
}

/// The longest word (and candidate) a suggestion is looked for, in UTF-8 bytes.
let maxSuggestedWord = 128

func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}

/// Shell-style glob matching with `*` and `?`, as used by `resource_types` and SARIF rule mappings.
public struct Glob: Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    private let scalars: [Unicode.Scalar]
    private let isLiteral: Bool

    public init(_ pattern: String) {
        self.pattern = pattern
        self.scalars = Array(pattern.unicodeScalars)
        self.isLiteral = !pattern.contains("*") && !pattern.contains("?")
    }

    public var description: String { pattern }

    public func matches(_ text: String) -> Bool {
        if isLiteral { return text == pattern }
        let t = Array(text.unicodeScalars)
        var p = 0, s = 0, star = -1, mark = 0
        while s < t.count {
            if p < scalars.count, scalars[p] == "?" || scalars[p] == t[s] {
                p += 1; s += 1
            } else if p < scalars.count, scalars[p] == "*" {
                star = p; mark = s; p += 1
            } else if star >= 0 {
                p = star + 1; mark += 1; s = mark
            } else {
                return false
            }
        }
        while p < scalars.count, scalars[p] == "*" { p += 1 }
        return p == scalars.count
    }
}
