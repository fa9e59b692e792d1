// The toy grammar (see toy_grammar.h and, for the language itself, toy.h). Each rule draws its parts,
// lists them in source order, and gives the order the target puts them in:
//
//   sentence      S .                       ->  S .
//                 S conj S' .               ->  S' conj S .         (adverbial clause first)
//                 does/do S ?               ->  S ku ?              (yes/no question)
//   clause        Subj VP                   ->  Subj VP
//   VP            V                         ->  V
//                 V Obj                     ->  Obj V               (verb-final)
//                 V prt Obj | V Obj prt     ->  Obj V'              (particle verb: one target verb)
//                 V that S                  ->  S ke V              (complement clause)
//                 does/do not V ...         ->  ... V ne            (negation after the verb)
//   noun phrase   Det Adj1 Adj2 N [Mod]     ->  N Adj2 Adj1 Det [Mod]
//   Mod           prep NP                   ->  NP postposition
//                 who/which VP              ->  REL VP              (subject relative)
//                 who/which Subj V          ->  REL Subj V          (object relative)
//
// Determiners, adjectives and the relative pronoun agree with their noun; verbs agree with their
// subject, which is the head noun of a subject relative clause.
#include "data/toy_grammar.h"

#include <algorithm>

#include "data/toy_lexicon.h"

namespace qkv::toy {

namespace {

// Where a clause stands, which decides what it may contain (and so keeps sentences readable).
enum Context { kMain, kEmbedded, kRelative };

ToyPair word(const std::string& src, const std::string& tgt) {
  return {{src}, {tgt}, {0}};
}
ToyPair source_only(const std::string& src) {
  return {{src}, {}, {}};
}

// Concatenates `parts` in source order for the source side and in `target_order` (indices into
// parts, each once) for the target side, shifting alignments to the combined source positions.
ToyPair arrange(const std::vector<ToyPair>& parts, const std::vector<int>& target_order) {
  ToyPair out;
  std::vector<int> offset;
  for (const auto& part : parts) {
    offset.push_back(static_cast<int>(out.src.size()));
    out.src.insert(out.src.end(), part.src.begin(), part.src.end());
  }
  for (const int i : target_order) {
    const ToyPair& part = parts[static_cast<size_t>(i)];
    out.tgt.insert(out.tgt.end(), part.tgt.begin(), part.tgt.end());
    for (const int a : part.align) out.align.push_back(a < 0 ? a : a + offset[static_cast<size_t>(i)]);
  }
  return out;
}

// "does not" / "do not": the auxiliary has no target word, "not" becomes the particle "ne".
std::vector<ToyPair> negation(bool plural_subject) {
  return {source_only(plural_subject ? "do" : "does"), word("not", lexicon().negation_tgt)};
}

}  // namespace

struct ToyGenerator::NounPhrase {
  ToyPair phrase;
  int agreement = 0;      // the noun's agreement class
  bool modified = false;  // has a prepositional phrase or a relative clause
};

ToyPair ToyGenerator::sample() {
  for (;;) {
    ToyPair pair = sentence();
    if (pair.src.size() <= kMaxLen && pair.tgt.size() <= kMaxLen) return pair;
  }
}

ToyPair ToyGenerator::sentence() {
  if (chance(15)) return arrange({clause(kMain, true), word("?", "?")}, {0, 1});
  ToyPair main = clause(kMain, false);
  if (!chance(25)) return arrange({main, word(".", ".")}, {0, 1});
  const WordPair& conj = lexicon().conjunctions[static_cast<size_t>(pick(lexicon().conjunctions.size()))];
  return arrange({main, word(conj.src, conj.tgt), clause(kEmbedded, false), word(".", ".")}, {2, 1, 0, 3});
}

ToyPair ToyGenerator::clause(int context, bool question) {
  NounPhrase subject = noun_phrase(true, 2, context != kRelative);
  const bool plural = subject.agreement == kPluralClass;
  const bool negated = !question && chance(15);
  ToyPair vp = verb_phrase(subject.agreement, !(question || negated), negated, context);
  if (!question) return arrange({subject.phrase, vp}, {0, 1});
  ToyPair aux = word(plural ? "do" : "does", lexicon().question_tgt);
  return arrange({aux, subject.phrase, vp}, {1, 2, 0});
}

ToyPair ToyGenerator::verb_phrase(int subject_class, bool finite, bool negated, int context) {
  const Lexicon& lex = lexicon();
  const int r = pick(100);
  VerbKind kind = r < 20   ? VerbKind::Intransitive
                  : r < 60 ? VerbKind::Transitive
                  : r < 77 ? VerbKind::Particle
                           : VerbKind::Clause;
  if (kind == VerbKind::Clause && context != kMain) kind = VerbKind::Transitive;
  const auto& candidates = lex.verbs_by_kind[static_cast<size_t>(kind)];
  const Verb& verb = lex.verbs[static_cast<size_t>(candidates[static_cast<size_t>(pick(candidates.size()))])];
  const bool plural = subject_class == kPluralClass;
  const std::string& form = finite && !plural ? verb.src_3sg : verb.src_base;

  // Parts 0, 1: the negation (empty phrases when there is none); part 2: the verb.
  std::vector<ToyPair> parts = negated ? negation(plural) : std::vector<ToyPair>{ToyPair{}, ToyPair{}};
  parts.push_back(word(form, verb.tgt[static_cast<size_t>(subject_class)]));
  switch (kind) {
    case VerbKind::Intransitive:
      return arrange(parts, {2, 1, 0});
    case VerbKind::Transitive:
      parts.push_back(noun_phrase(false, 2, context != kRelative).phrase);
      return arrange(parts, {3, 2, 1, 0});
    case VerbKind::Particle: {
      NounPhrase object = noun_phrase(false, 2, context != kRelative);
      const bool separated = !object.modified && chance(50);  // "turns the lamp off"
      parts.push_back(separated ? object.phrase : source_only(verb.particle));
      parts.push_back(separated ? source_only(verb.particle) : object.phrase);
      return arrange(parts, {separated ? 3 : 4, 2, 1, 0, separated ? 4 : 3});
    }
    case VerbKind::Clause:
      parts.push_back(word(lex.complementizer_src, lex.complementizer_tgt));
      parts.push_back(clause(kEmbedded, false));
      return arrange(parts, {4, 3, 2, 1, 0});
  }
  return {};
}

ToyGenerator::NounPhrase ToyGenerator::noun_phrase(bool animate, int max_adjectives, bool allow_modifier) {
  const Lexicon& lex = lexicon();
  const size_t noun_index =
      animate ? static_cast<size_t>(lex.animate_nouns[static_cast<size_t>(pick(lex.animate_nouns.size()))])
              : static_cast<size_t>(pick(lex.nouns.size()));
  const Noun& noun = lex.nouns[noun_index];
  const bool plural = chance(35);
  NounPhrase np;
  np.agreement = agreement_class(noun.gender, plural);
  const auto cls = static_cast<size_t>(np.agreement);

  const Determiner& det = lex.determiners[static_cast<size_t>(pick(lex.determiners.size()))];
  const int r = pick(100);
  const int n_adjectives = std::min(max_adjectives, r < 45 ? 0 : r < 85 ? 1 : 2);
  std::vector<ToyPair> parts = {ToyPair{}};  // the determiner, once the next word is known ("a" / "an")
  std::vector<size_t> chosen;
  while (static_cast<int>(chosen.size()) < n_adjectives) {
    const auto a = static_cast<size_t>(pick(lex.adjectives.size()));
    if (std::find(chosen.begin(), chosen.end(), a) != chosen.end()) continue;
    chosen.push_back(a);
    parts.push_back(word(lex.adjectives[a].src, lex.adjectives[a].tgt[cls]));
  }
  parts.push_back(word(plural ? noun.src_pl : noun.src_sg, plural ? noun.tgt_pl : noun.tgt_sg));
  const bool vowel_next = std::string("aeiou").find(parts[1].src[0][0]) != std::string::npos;
  parts[0] = word(plural ? det.src_pl : vowel_next ? det.src_sg_vowel : det.src_sg, det.tgt[cls]);

  // Target order: the noun, the adjectives mirrored, the determiner, then any modifier.
  std::vector<int> order;
  for (int i = static_cast<int>(parts.size()) - 1; i >= 0; --i) order.push_back(i);
  if (allow_modifier) {
    const int m = pick(100);
    if (m < 15) parts.push_back(prepositional_phrase());
    if (m >= 15 && m < 27) parts.push_back(relative_clause(np.agreement, noun.animate));
    np.modified = m < 27;
    if (np.modified) order.push_back(static_cast<int>(parts.size()) - 1);
  }
  np.phrase = arrange(parts, order);
  return np;
}

ToyPair ToyGenerator::prepositional_phrase() {
  const WordPair& prep = lexicon().prepositions[static_cast<size_t>(pick(lexicon().prepositions.size()))];
  return arrange({word(prep.src, prep.tgt), noun_phrase(false, 1, false).phrase}, {1, 0});
}

ToyPair ToyGenerator::relative_clause(int head_class, bool head_animate) {
  const Lexicon& lex = lexicon();
  ToyPair pronoun = word(head_animate ? "who" : "which", lex.relative[static_cast<size_t>(head_class)]);
  const bool negated = chance(10);
  if (chance(60)) {  // subject relative: the verb agrees with the head noun, several words back
    return arrange({pronoun, verb_phrase(head_class, !negated, negated, kRelative)}, {0, 1});
  }
  // Object relative: "which the man sees" -> REL Subj V, the verb agreeing with its own subject.
  NounPhrase subject = noun_phrase(true, 1, false);
  const bool plural = subject.agreement == kPluralClass;
  const auto& transitive = lex.verbs_by_kind[static_cast<size_t>(VerbKind::Transitive)];
  const Verb& verb = lex.verbs[static_cast<size_t>(transitive[static_cast<size_t>(pick(transitive.size()))])];
  std::vector<ToyPair> parts = {pronoun, subject.phrase};
  const std::vector<ToyPair> neg = negated ? negation(plural) : std::vector<ToyPair>{ToyPair{}, ToyPair{}};
  parts.insert(parts.end(), neg.begin(), neg.end());
  const std::string& form = !negated && !plural ? verb.src_3sg : verb.src_base;
  parts.push_back(word(form, verb.tgt[static_cast<size_t>(subject.agreement)]));
  return arrange(parts, {0, 1, 4, 3, 2});
}

}  // namespace qkv::toy
