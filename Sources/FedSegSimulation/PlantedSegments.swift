import FedSegMath
import FedSegNode
import Foundation

/// Synthetic users with planted segments, so segment recovery can be measured against ground truth.
///
/// Each segment has a theme: its own vocabulary, phrasing and items. A user writes 2–4 short
/// texts mostly from their segment's vocabulary (each word from another segment with probability
/// `crossSegmentNoise`), and interacts with 5–20 items: popular items of their own segment
/// (Zipf-skewed) with probability 1 − `crossSegmentNoise`, otherwise any item. Items carry a title
/// and tags from their theme. With more segments than themes, themes are paired.
public struct PlantedSegments: Sendable {
    public var users: Int
    public var segments: Int
    public var itemsPerSegment: Int
    public var crossSegmentNoise: Double
    public var seed: UInt64

    public init(users: Int, segments: Int, itemsPerSegment: Int = 60, crossSegmentNoise: Double = 0.15, seed: UInt64) {
        precondition(users >= 1 && segments >= 1 && itemsPerSegment >= 1, "sizes must be positive")
        precondition((0...1).contains(crossSegmentNoise), "noise is a probability")
        self.users = users
        self.segments = segments
        self.itemsPerSegment = itemsPerSegment
        self.crossSegmentNoise = crossSegmentNoise
        self.seed = seed
    }

    static let themes: [(name: String, words: [String])] = [
        ("outdoors", "hiking trail boots tent camping mountain backpack summit forest river waterproof compass campfire climbing trek".split(separator: " ").map(String.init)),
        ("cooking", "recipe kitchen garlic pasta oven baking sourdough spices simmer flavor knife skillet vegan dessert roast".split(separator: " ").map(String.init)),
        ("gadgets", "laptop phone battery charger keyboard monitor headphones bluetooth processor screen router tablet firmware usb camera".split(separator: " ").map(String.init)),
        ("music", "guitar album concert playlist jazz vinyl melody drummer band piano lyrics festival chords singer rhythm".split(separator: " ").map(String.init)),
        ("travel", "flight hotel passport beach itinerary luggage airport resort island museum tour backpacking visa train cruise".split(separator: " ").map(String.init)),
        ("fitness", "workout gym running marathon protein squats yoga cardio stretching dumbbells treadmill sprint calories coach muscles".split(separator: " ").map(String.init)),
        ("finance", "stocks budget savings mortgage investing dividends retirement portfolio taxes crypto bonds inflation loan interest pension".split(separator: " ").map(String.init)),
        ("gaming", "console controller multiplayer quest boss level rpg speedrun esports shooter strategy loot graphics patch arcade".split(separator: " ").map(String.init)),
        ("parenting", "toddler stroller diapers nursery bedtime preschool homework playground lullaby babysitter crib siblings tantrum toys school".split(separator: " ").map(String.init)),
        ("gardening", "tomatoes seeds compost soil pruning succulents greenhouse watering roses fertilizer seedlings mulch orchard herbs shovel".split(separator: " ").map(String.init)),
        ("pets", "puppy kitten leash veterinarian aquarium litter grooming treats adoption parrot hamster collar training kennel fur".split(separator: " ").map(String.init)),
        ("fashion", "dress sneakers jacket denim scarf handbag tailoring silk wardrobe boutique runway accessories boots sweater linen".split(separator: " ").map(String.init)),
    ]

    static let templates = [
        "I really love %@ and %@, especially when the %@ is good.",
        "Looking for recommendations on %@ and %@ for my %@.",
        "My weekend was all about %@, some %@ and a bit of %@.",
        "Anyone else obsessed with %@? The %@ and %@ make it worth it.",
        "Just bought new %@ gear; the %@ was great but the %@ could be better.",
        "Tips for %@ and %@? I am new to %@.",
    ]

    /// The theme words of a segment (paired themes beyond the twelfth).
    func vocabulary(of segment: Int) -> [String] {
        let count = Self.themes.count
        if segments <= count { return Self.themes[segment].words }
        return Self.themes[segment % count].words + Self.themes[(segment / count + segment + 1) % count].words
    }

    func themeName(of segment: Int) -> String {
        segments <= Self.themes.count ? Self.themes[segment].name
            : Self.themes[segment % Self.themes.count].name + "+" + Self.themes[(segment / Self.themes.count + segment + 1) % Self.themes.count].name
    }

    public func generate() -> Dataset {
        var rng = SeededRandom(seed: seed, stream: 0x7E)
        var items: [Dataset.Item] = []
        for s in 0..<segments {
            let words = vocabulary(of: s)
            for i in 0..<itemsPerSegment {
                let a = words[Int(rng.next(upperBound: UInt64(words.count)))]
                let b = words[Int(rng.next(upperBound: UInt64(words.count)))]
                let c = words[Int(rng.next(upperBound: UInt64(words.count)))]
                items.append(Dataset.Item(
                    item: "i\(s * itemsPerSegment + i)",
                    title: "The \(a.capitalized) and \(b) guide",
                    text: "all about \(a), \(b) and \(c)",
                    tags: [themeName(of: s), c]
                ))
            }
        }
        // Zipf weights within a segment's items: popular items are liked more.
        let zipf = (1...itemsPerSegment).map { 1 / pow(Double($0), 0.8) }
        let zipfTotal = zipf.reduce(0, +)
        var users: [Dataset.User] = []
        users.reserveCapacity(self.users)
        for u in 0..<self.users {
            let s = Int(rng.next(upperBound: UInt64(segments)))
            let words = vocabulary(of: s)
            func word() -> String {
                if rng.nextUniform() < crossSegmentNoise {
                    let other = vocabulary(of: Int(rng.next(upperBound: UInt64(segments))))
                    return other[Int(rng.next(upperBound: UInt64(other.count)))]
                }
                return words[Int(rng.next(upperBound: UInt64(words.count)))]
            }
            let textCount = 2 + Int(rng.next(upperBound: UInt64(3)))
            let texts = (0..<textCount).map { _ -> String in
                let template = Self.templates[Int(rng.next(upperBound: UInt64(Self.templates.count)))]
                return String(format: template, word(), word(), word())
            }
            var liked: [String] = []
            let itemCount = 5 + Int(rng.next(upperBound: UInt64(16)))
            var seen = Set<Int>()
            while liked.count < itemCount {
                let index: Int
                if rng.nextUniform() < crossSegmentNoise {
                    index = Int(rng.next(upperBound: UInt64(items.count)))
                } else {
                    var target = rng.nextUniform() * zipfTotal
                    var rank = 0
                    while rank < itemsPerSegment - 1 && target >= zipf[rank] {
                        target -= zipf[rank]
                        rank += 1
                    }
                    index = s * itemsPerSegment + rank
                }
                if seen.insert(index).inserted { liked.append(items[index].item) }
                if seen.count >= items.count { break }
            }
            users.append(Dataset.User(user: "u\(u)", texts: texts, items: liked, segment: "s\(s)"))
        }
        return Dataset(users: users, items: items)
    }
}
