#pragma once
// The placeholder vocabulary of sdlens's random and planted models, and the Hugging Face
// tokenizer files written from it. Such models have no tokenizer of their own, but text must
// reach them (llama.cpp will not load a GGUF file without a vocabulary, and the analyses read
// text): the vocabulary is SentencePiece with byte fallback, so any text tokenizes, and its
// piece "." is the planted delimiter, so a sentence ends in a trigger token.
//
// Layout, one piece per id of the model: BOS and EOS are control tokens at the config's ids
// (one <|endoftext|> when they are the same id, as in GPT-2, else <s> and </s>); "." at the
// delimiter id; the other ids take, in order, <unk>, the word boundary U+2581 (SentencePiece's
// space), the byte tokens <0x00>..<0xFF> without 0x20 and 0x2E (which the two pieces before
// cover) for as many bytes as fit, then numbered fillers. The default 128-token vocabulary has
// bytes up to 0x7C: every ASCII letter and digit. A vocabulary of 259 or more (258 when BOS is
// EOS) covers every byte.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdlens/core/error.hpp"
#include "sdlens/model/config.hpp"

namespace sdlens {

struct placeholder_vocabulary {
    std::vector<std::string> tokens;  // as GGUF stores them: U+2581 for the space
    std::vector<float> scores;
    std::vector<std::int32_t> types;  // llama.cpp's: 1 normal, 2 unknown, 3 control, 6 byte
    int unknown = -1, bos = -1, eos = -1;
    int delimiter = -1;  // the id of ".", -1 when the delimiter id was not free for it
    // Whether text is encoded with BOS first: the planted RoPE models trigger on BOS, so their
    // tokenizers add it; GPT-2 triggers on position 0 and, as the real GPT-2 (BOS = EOS =
    // <|endoftext|>), adds none.
    bool add_bos = false;
};

// The vocabulary described at the top of this file; delimiter -1 = default_delimiter_token(c).
// A delimiter that is BOS, EOS or outside the vocabulary gets no "." (and 0x2E stays a byte).
inline placeholder_vocabulary make_placeholder_vocabulary(const model_config& c, std::int64_t delimiter = -1)
{
    const auto n = static_cast<std::size_t>(std::max<std::int64_t>(0, c.vocab_size));
    auto inside = [&](std::int64_t id) { return id >= 0 && static_cast<std::size_t>(id) < n; };
    placeholder_vocabulary v;
    v.tokens.resize(n);
    v.scores.assign(n, 0.0f);
    v.types.assign(n, 1);
    std::vector<bool> taken(n, false);
    auto place = [&](std::int64_t id, const char* text, std::int32_t type) {
        v.tokens[static_cast<std::size_t>(id)] = text;
        v.types[static_cast<std::size_t>(id)] = type;
        taken[static_cast<std::size_t>(id)] = true;
    };
    if (inside(c.bos_token)) {
        place(c.bos_token, c.bos_token == c.eos_token ? "<|endoftext|>" : "<s>", 3);
        v.bos = static_cast<int>(c.bos_token);
    }
    if (inside(c.eos_token)) {
        if (c.eos_token != c.bos_token) place(c.eos_token, "</s>", 3);
        v.eos = static_cast<int>(c.eos_token);
    }
    const std::int64_t delim = delimiter >= 0 ? delimiter : default_delimiter_token(c);
    if (inside(delim) && !taken[static_cast<std::size_t>(delim)]) {
        place(delim, ".", 1);
        v.delimiter = static_cast<int>(delim);
    }
    v.add_bos = v.bos >= 0 && c.family != model_family::gpt2;

    bool boundary = false;
    int next_byte = 0;
    auto skip_covered = [&] {
        while (next_byte == 0x20 || (next_byte == 0x2E && v.delimiter >= 0)) ++next_byte;
    };
    skip_covered();
    for (std::size_t i = 0; i < n; ++i) {
        if (taken[i]) continue;
        if (v.unknown < 0) {
            v.unknown = static_cast<int>(i);
            v.tokens[i] = "<unk>";
            v.types[i] = 2;
        } else if (!boundary) {
            boundary = true;
            v.tokens[i] = "\xE2\x96\x81";
        } else if (next_byte < 256) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", next_byte++);
            skip_covered();
            v.tokens[i] = name;
            v.types[i] = 6;
        } else {
            v.tokens[i] = "<filler " + std::to_string(i) + ">";
            v.scores[i] = -static_cast<float>(i);
        }
    }
    return v;
}

// tokenizer.json for v, as Hugging Face converts a SentencePiece BPE model with byte fallback
// (Llama-2's): vocab piece -> id, no merges (every piece is one character or one byte), the
// special tokens also as added tokens, a normalizer that marks word starts with U+2581, a
// post-processor adding BOS when v.add_bos, and the decoder that undoes all of it.
inline nlohmann::json hf_tokenizer_json(const placeholder_vocabulary& v)
{
    using nlohmann::json;
    const std::string mark = "\xE2\x96\x81";
    json vocab = json::object();
    json added = json::array();
    for (std::size_t i = 0; i < v.tokens.size(); ++i) {
        vocab[v.tokens[i]] = i;
        if (v.types[i] == 2 || v.types[i] == 3)
            added.push_back({{"id", i}, {"content", v.tokens[i]}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                             {"normalized", false}, {"special", true}});
    }
    json post = nullptr;
    if (v.add_bos) {
        const std::string& bos = v.tokens[static_cast<std::size_t>(v.bos)];
        const json special = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
        post = {{"type", "TemplateProcessing"},
                {"single", {special, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                {"pair", {special, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}, special, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
                {"special_tokens", {{bos, {{"id", bos}, {"ids", {v.bos}}, {"tokens", {bos}}}}}}};
    }
    return {
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", added},
        {"normalizer",
         {{"type", "Sequence"},
          {"normalizers",
           {{{"type", "Prepend"}, {"prepend", mark}}, {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", mark}}}}}},
        {"pre_tokenizer", nullptr},
        {"post_processor", post},
        {"decoder",
         {{"type", "Sequence"},
          {"decoders",
           {{{"type", "Replace"}, {"pattern", {{"String", mark}}}, {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}},
            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
        {"model",
         {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", v.unknown >= 0 ? json(v.tokens[static_cast<std::size_t>(v.unknown)]) : json(nullptr)},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", true},
          {"byte_fallback", true},
          {"vocab", vocab},
          {"merges", json::array()}}},
    };
}

// tokenizer_config.json for v: the special tokens by name and whether BOS is added.
inline nlohmann::json hf_tokenizer_config_json(const placeholder_vocabulary& v)
{
    using nlohmann::json;
    auto name = [&](int id) { return id >= 0 ? json(v.tokens[static_cast<std::size_t>(id)]) : json(nullptr); };
    return {{"tokenizer_class", "PreTrainedTokenizerFast"},
            {"add_bos_token", v.add_bos},
            {"add_eos_token", false},
            {"bos_token", name(v.bos)},
            {"eos_token", name(v.eos)},
            {"unk_token", name(v.unknown)},
            {"clean_up_tokenization_spaces", false}};
}

// Writes dir/tokenizer.json and dir/tokenizer_config.json for v (the directory must exist).
inline void write_hf_tokenizer(const std::string& dir, const placeholder_vocabulary& v)
{
    auto put = [&](const char* file, const nlohmann::json& j) {
        const auto path = (std::filesystem::path(dir) / file).string();
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << j.dump(2) << '\n';
        out.close();
        if (!out) fail_input(path, "write failed");
    };
    put("tokenizer.json", hf_tokenizer_json(v));
    put("tokenizer_config.json", hf_tokenizer_config_json(v));
}

}  // namespace sdlens
