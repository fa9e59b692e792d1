// The toy lexicon (see toy_lexicon.h): hand-written source words, generated target stems.
//
// Target inflection, by agreement class (masculine sg, feminine sg, neuter sg, plural):
//   determiners and adjectives  stem + o / a / e / i       ("lo la le li", "granto granta ...")
//   relative pronoun            ho / ha / he / hi
//   verbs (agree with subject)  stem + an / en / in / on   ("vidan viden vidin vidon")
//   nouns                       singular stem, plural stem + s (after a vowel) or + es
#include "data/toy_lexicon.h"

#include <random>
#include <stdexcept>
#include <unordered_set>

namespace qkv::toy {

namespace {

const Forms kAgreementVowels = {"o", "a", "e", "i"};
const Forms kVerbEndings = {"an", "en", "in", "on"};

Forms inflect(const std::string& stem, const Forms& endings) {
  return {stem + endings[0], stem + endings[1], stem + endings[2], stem + endings[3]};
}

std::string noun_plural(const std::string& sg) {
  const bool vowel_final = std::string("aeiou").find(sg.back()) != std::string::npos;
  return sg + (vowel_final ? "s" : "es");
}

// Invents target stems: syllables from a small inventory, drawn by a generator with a fixed seed,
// each accepted only when none of the forms it makes is already a word of the language.
class StemMaker {
 public:
  explicit StemMaker(const std::vector<std::string>& reserved) : used_(reserved.begin(), reserved.end()) {}

  // syllables (consonant + vowel) and then, with probability coda_pct %, a closing consonant.
  template <typename MakeForms>
  auto make(int syllables, int coda_pct, MakeForms make_forms) {
    for (int attempt = 0; attempt < 10000; ++attempt) {
      std::string stem;
      for (int i = 0; i < syllables; ++i) stem += std::string(1, pick(kOnsets)) + pick(kVowels);
      if (static_cast<int>(rng_() % 100) < coda_pct) stem += pick(kCodas);
      const auto forms = make_forms(stem);
      bool fresh = true;
      for (const auto& form : forms) fresh = fresh && used_.count(form) == 0;
      if (!fresh) continue;
      used_.insert(forms.begin(), forms.end());
      return forms;
    }
    throw std::logic_error("toy lexicon: ran out of fresh stems");
  }

 private:
  static constexpr const char* kOnsets = "bdfgklmnprstvz";
  static constexpr const char* kVowels = "aeiou";
  static constexpr const char* kCodas = "lnrst";

  char pick(const char* letters) {
    const size_t n = std::char_traits<char>::length(letters);
    return letters[rng_() % n];
  }

  std::mt19937_64 rng_{0x716b76};  // "qkv": fixed, so the language never changes
  std::unordered_set<std::string> used_;
};

struct NounEntry {
  const char *sg, *pl;
};
// Gender cycles masculine, feminine, neuter along each list.
const NounEntry kAnimate[] = {
    {"man", "men"},    {"woman", "women"},      {"child", "children"},   {"boy", "boys"},
    {"girl", "girls"}, {"teacher", "teachers"}, {"doctor", "doctors"},   {"farmer", "farmers"},
    {"king", "kings"}, {"queen", "queens"},     {"student", "students"}, {"baker", "bakers"},
    {"dog", "dogs"},   {"cat", "cats"},         {"horse", "horses"},     {"bird", "birds"},
    {"fox", "foxes"},  {"wolf", "wolves"},      {"mouse", "mice"},       {"rabbit", "rabbits"},
    {"bear", "bears"}, {"cow", "cows"},         {"sailor", "sailors"},   {"thief", "thieves"}};
const NounEntry kInanimate[] = {
    {"book", "books"},   {"box", "boxes"},      {"house", "houses"},     {"tree", "trees"},
    {"car", "cars"},     {"ball", "balls"},     {"cup", "cups"},         {"letter", "letters"},
    {"key", "keys"},     {"door", "doors"},     {"window", "windows"},   {"chair", "chairs"},
    {"table", "tables"}, {"river", "rivers"},   {"garden", "gardens"},   {"bridge", "bridges"},
    {"apple", "apples"}, {"flower", "flowers"}, {"stone", "stones"},     {"ship", "ships"},
    {"lamp", "lamps"},   {"song", "songs"},     {"picture", "pictures"}, {"bottle", "bottles"},
    {"hat", "hats"},     {"coat", "coats"},     {"road", "roads"},       {"city", "cities"}};

const char* const kAdjectives[] = {"big",     "small", "old",   "young", "red",    "blue",
                                   "green",   "black", "white", "happy", "sad",    "quiet",
                                   "loud",    "fast",  "slow",  "tall",  "clever", "brave",
                                   "strange", "heavy", "warm",  "cold",  "new",    "beautiful"};

struct VerbEntry {
  VerbKind kind;
  const char *third, *base, *particle;
};
const VerbEntry kVerbs[] = {{VerbKind::Intransitive, "sleeps", "sleep", ""},
                            {VerbKind::Intransitive, "runs", "run", ""},
                            {VerbKind::Intransitive, "laughs", "laugh", ""},
                            {VerbKind::Intransitive, "sings", "sing", ""},
                            {VerbKind::Intransitive, "waits", "wait", ""},
                            {VerbKind::Intransitive, "falls", "fall", ""},
                            {VerbKind::Intransitive, "swims", "swim", ""},
                            {VerbKind::Intransitive, "dances", "dance", ""},
                            {VerbKind::Intransitive, "cries", "cry", ""},
                            {VerbKind::Intransitive, "smiles", "smile", ""},
                            {VerbKind::Intransitive, "works", "work", ""},
                            {VerbKind::Intransitive, "arrives", "arrive", ""},
                            {VerbKind::Transitive, "sees", "see", ""},
                            {VerbKind::Transitive, "likes", "like", ""},
                            {VerbKind::Transitive, "finds", "find", ""},
                            {VerbKind::Transitive, "takes", "take", ""},
                            {VerbKind::Transitive, "throws", "throw", ""},
                            {VerbKind::Transitive, "carries", "carry", ""},
                            {VerbKind::Transitive, "brings", "bring", ""},
                            {VerbKind::Transitive, "follows", "follow", ""},
                            {VerbKind::Transitive, "helps", "help", ""},
                            {VerbKind::Transitive, "watches", "watch", ""},
                            {VerbKind::Transitive, "paints", "paint", ""},
                            {VerbKind::Transitive, "cleans", "clean", ""},
                            {VerbKind::Transitive, "buys", "buy", ""},
                            {VerbKind::Transitive, "sells", "sell", ""},
                            {VerbKind::Transitive, "needs", "need", ""},
                            {VerbKind::Transitive, "wants", "want", ""},
                            {VerbKind::Transitive, "remembers", "remember", ""},
                            {VerbKind::Transitive, "forgets", "forget", ""},
                            {VerbKind::Transitive, "loves", "love", ""},
                            {VerbKind::Transitive, "hates", "hate", ""},
                            {VerbKind::Transitive, "opens", "open", ""},
                            {VerbKind::Transitive, "closes", "close", ""},
                            {VerbKind::Transitive, "builds", "build", ""},
                            {VerbKind::Transitive, "calls", "call", ""},
                            // "take", "throw" and "bring" are also plain transitive verbs: only the particle,
                            // which may stand after the object, tells which target verb they become.
                            {VerbKind::Particle, "picks", "pick", "up"},
                            {VerbKind::Particle, "puts", "put", "down"},
                            {VerbKind::Particle, "takes", "take", "away"},
                            {VerbKind::Particle, "throws", "throw", "away"},
                            {VerbKind::Particle, "brings", "bring", "back"},
                            {VerbKind::Particle, "gives", "give", "back"},
                            {VerbKind::Particle, "turns", "turn", "on"},
                            {VerbKind::Particle, "turns", "turn", "off"},
                            {VerbKind::Clause, "says", "say", ""},
                            {VerbKind::Clause, "thinks", "think", ""},
                            {VerbKind::Clause, "knows", "know", ""},
                            {VerbKind::Clause, "believes", "believe", ""},
                            {VerbKind::Clause, "hopes", "hope", ""},
                            {VerbKind::Clause, "hears", "hear", ""}};

Lexicon build_lexicon() {
  Lexicon lex;
  lex.determiners = {{"the", "the", inflect("l", kAgreementVowels), "the"},
                     {"a", "some", inflect("un", kAgreementVowels), "an"},
                     {"this", "these", inflect("st", kAgreementVowels), "this"},
                     {"my", "my", inflect("m", kAgreementVowels), "my"}};
  lex.relative = inflect("h", kAgreementVowels);
  lex.prepositions = {{"in", "en"},    {"under", "sub"},   {"behind", "post"},  {"near", "apud"},
                      {"with", "kun"}, {"without", "sen"}, {"beside", "flank"}, {"from", "de"}};
  lex.conjunctions = {{"because", "kar"}, {"when", "kiam"}, {"although", "tamen"}, {"if", "se"}};

  std::vector<std::string> reserved = {lex.complementizer_tgt, lex.negation_tgt, lex.question_tgt, ".", "?"};
  for (const auto& det : lex.determiners) reserved.insert(reserved.end(), det.tgt.begin(), det.tgt.end());
  reserved.insert(reserved.end(), lex.relative.begin(), lex.relative.end());
  for (const auto& p : lex.prepositions) reserved.push_back(p.tgt);
  for (const auto& c : lex.conjunctions) reserved.push_back(c.tgt);
  StemMaker stems(reserved);

  const auto add_nouns = [&](const auto& entries, bool animate) {
    int i = 0;
    for (const auto& e : entries) {
      const auto forms = stems.make(2, 40, [](const std::string& s) {
        return std::array<std::string, 2>{s, noun_plural(s)};
      });
      if (animate) lex.animate_nouns.push_back(static_cast<int>(lex.nouns.size()));
      lex.nouns.push_back({e.sg, e.pl, forms[0], forms[1], static_cast<Gender>(i++ % 3), animate});
    }
  };
  add_nouns(kAnimate, true);
  add_nouns(kInanimate, false);
  for (const char* adj : kAdjectives) {
    lex.adjectives.push_back(
        {adj, stems.make(1, 100, [](const std::string& s) { return inflect(s, kAgreementVowels); })});
  }
  for (const auto& e : kVerbs) {
    const Forms forms = stems.make(2, 60, [](const std::string& s) { return inflect(s, kVerbEndings); });
    lex.verbs_by_kind[static_cast<int>(e.kind)].push_back(static_cast<int>(lex.verbs.size()));
    lex.verbs.push_back({e.kind, e.third, e.base, e.particle, forms});
  }
  return lex;
}

}  // namespace

const Lexicon& lexicon() {
  static const Lexicon lex = build_lexicon();
  return lex;
}

}  // namespace qkv::toy
