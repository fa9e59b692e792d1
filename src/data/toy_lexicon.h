// The lexicon of the toy language pair (docs/toy-task.md): an English-like source
// language and an invented target language whose words inflect for gender and number.
//
// Every target word that agrees with a noun has four forms, indexed by the noun's agreement class:
// masculine, feminine or neuter singular, and one plural shared by the three genders. A noun's
// gender is a lexical fact (nothing in its form shows it), as in German.
//
// The lexicon is fixed: the target stems come from a generator with a constant seed, so that
// --seed changes which sentences are drawn, never the language itself.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace qkv::toy {

enum class Gender { Masculine, Feminine, Neuter };

// 0, 1, 2: masculine, feminine, neuter singular; 3: plural.
constexpr int kPluralClass = 3;
inline int agreement_class(Gender gender, bool plural) {
  return plural ? kPluralClass : static_cast<int>(gender);
}

using Forms = std::array<std::string, 4>;  // target forms by agreement class

struct Noun {
  std::string src_sg, src_pl;
  std::string tgt_sg, tgt_pl;
  Gender gender;
  bool animate;  // animate nouns can be subjects and take "who"; the others take "which"
};

struct Adjective {
  std::string src;
  Forms tgt;
};

enum class VerbKind { Intransitive, Transitive, Particle, Clause };

struct Verb {
  VerbKind kind;
  std::string src_3sg, src_base;  // "sees", "see"
  std::string particle;           // "up" in "picks up"; empty for other kinds
  Forms tgt;                      // agrees with the subject
};

struct Determiner {
  std::string src_sg, src_pl;  // "this", "these"
  Forms tgt;
  std::string src_sg_vowel;  // before a vowel: "an" for "a"; otherwise src_sg
};

struct WordPair {
  std::string src, tgt;
};

struct Lexicon {
  std::vector<Noun> nouns;
  std::vector<int> animate_nouns;  // indices into nouns
  std::vector<Adjective> adjectives;
  std::vector<Verb> verbs;
  std::array<std::vector<int>, 4> verbs_by_kind;  // indices into verbs, by VerbKind
  std::vector<Determiner> determiners;
  std::vector<WordPair> prepositions;  // source preposition -> target postposition
  std::vector<WordPair> conjunctions;  // adverbial clauses: because, when, although, if
  Forms relative;                      // "who"/"which" -> agrees with the head noun
  std::string complementizer_src = "that";
  std::string complementizer_tgt = "ke";  // closes a complement clause
  std::string negation_tgt = "ne";        // follows the verb
  std::string question_tgt = "ku";        // ends a yes/no question
};

// Built once on first use.
const Lexicon& lexicon();

}  // namespace qkv::toy
