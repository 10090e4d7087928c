#pragma once
// Text to token ids and back, for the two tokenizer kinds the supported checkpoints use:
//  - SentencePiece-style BPE with scores (llama2.c's tokenizer .bin, GGUF tokenizer.ggml.model
//    "llama"), encoded with llama2.c's algorithm: a dummy-prefix space, each UTF-8 character
//    looked up whole (bytes missing from the vocabulary fall back to <0xXX> tokens), then the
//    adjacent pair whose concatenation is the highest-scoring token is merged until none is.
//    Hugging Face tokenizer.json files converted from SentencePiece (Llama-2, Mistral: U+2581
//    word marks, byte fallback) are read as this kind, scores taken from merge ranks.
//  - Byte-level BPE with ranked merges (Hugging Face tokenizer.json of GPT-2/Llama-3/Qwen2
//    style, GGUF tokenizer.ggml.model "gpt2"): added tokens split out first, then the
//    pre-tokenizer split (tokenizer_pretokenize.hpp), bytes mapped to GPT-2's printable
//    characters, and the lowest-ranked adjacent pair merged until none is.
// SentencePiece vocabularies from GGUF write the word boundary as U+2581; it is turned into a
// plain space on load, which is what llama2.c's own vocabulary files hold.
//
// Whether the model's own tokenizer prepends BOS (adds_bos()) is said in different places by
// different files, and the first that says it decides: tokenizer_config.json "add_bos_token";
// GGUF "tokenizer.ggml.add_bos_token"; a tokenizer.json post-processor "TemplateProcessing"
// (alone or a step of a "Sequence") whose single template starts with a special token (Llama-3,
// whose tokenizer_config.json does not say). Otherwise the kind decides, as its runtimes do:
// SentencePiece adds BOS (llama2.c's run.c, llama.cpp for "llama"), byte-level BPE does not
// (GPT-2, Qwen2). Never without a BOS token.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdlens/io/checkpoint.hpp"
#include "sdlens/io/gguf.hpp"
#include "sdlens/io/mapped_file.hpp"
#include "sdlens/io/tokenizer_pretokenize.hpp"

namespace sdlens {

class tokenizer {
public:
    enum class kind { sentencepiece, byte_bpe };

    // llama2.c's tokenizer .bin: int32 max_token_length, then per token float score, int32
    // length, bytes. The file does not say how many tokens it holds: all of them are read, and
    // checked against expected_vocab when given (> 0).
    static tokenizer parse_llama2c(const std::byte* data, std::size_t size, const std::string& source,
                                   std::int64_t expected_vocab = 0)
    {
        byte_reader r(data, size, source);
        const auto max_len = r.read<std::int32_t>("max token length");
        if (max_len < 1) fail_input(source, "llama2.c tokenizer: max token length " + std::to_string(max_len));
        tokenizer t;
        t.kind_ = kind::sentencepiece;
        while (r.remaining() > 0) {
            const auto score = r.read<float>("token score");
            const auto len = r.read<std::int32_t>("token length");
            if (len < 0 || len > max_len)
                fail_input(source, "token " + std::to_string(t.pieces_.size()) + " has length " + std::to_string(len) +
                                       " (max " + std::to_string(max_len) + ")");
            const auto* p = r.take(static_cast<std::size_t>(len), "token bytes");
            t.pieces_.emplace_back(reinterpret_cast<const char*>(p), static_cast<std::size_t>(len));
            t.scores_.push_back(score);
        }
        if (expected_vocab > 0 && static_cast<std::int64_t>(t.pieces_.size()) != expected_vocab)
            fail_input(source, "tokenizer holds " + std::to_string(t.pieces_.size()) + " tokens but the model's vocabulary has " +
                                   std::to_string(expected_vocab));
        t.bos_ = 1;  // run.c's fixed ids
        t.eos_ = 2;
        t.finish_sentencepiece();
        return t;
    }
    static tokenizer read_llama2c(const std::string& path, std::int64_t expected_vocab = 0)
    {
        mapped_file f(path);
        return parse_llama2c(f.data(), f.size(), path, expected_vocab);
    }

    // From GGUF metadata (tokenizer.ggml.*); nullopt when the file has no tokenizer.
    static std::optional<tokenizer> from_gguf(const checkpoint& ck)
    {
        const auto& md = ck.metadata;
        const auto model_it = md.find("tokenizer.ggml.model");
        if (model_it == md.end()) return std::nullopt;
        const auto model = gguf_string_bytes(*model_it).value_or("");
        auto bad = [&](const std::string& what) { fail_input(ck.path, "tokenizer metadata: " + what); };
        const auto tokens_it = md.find("tokenizer.ggml.tokens");
        if (tokens_it == md.end() || !tokens_it->is_array()) bad("tokenizer.ggml.tokens is missing");
        tokenizer t;
        for (const auto& v : *tokens_it) {
            auto s = gguf_string_bytes(v);
            if (!s) bad("a token is not a string");
            t.pieces_.push_back(std::move(*s));
        }
        const auto n = t.pieces_.size();
        auto id = [&](const char* key, std::int64_t fallback) -> int {
            const auto it = md.find(key);
            if (it == md.end() || !it->is_number_integer()) return static_cast<int>(fallback);
            const auto v = it->get<std::int64_t>();
            return v >= 0 && static_cast<std::size_t>(v) < n ? static_cast<int>(v) : -1;
        };
        if (const auto it = md.find("tokenizer.ggml.add_bos_token"); it != md.end()) {
            if (!it->is_boolean()) bad("tokenizer.ggml.add_bos_token is not a bool");
            t.add_bos_ = it->get<bool>();
        }
        std::vector<std::int32_t> types;
        if (const auto it = md.find("tokenizer.ggml.token_type"); it != md.end() && it->is_array()) {
            for (const auto& v : *it) types.push_back(v.is_number_integer() ? v.get<std::int32_t>() : 1);
            if (types.size() != n) bad("token_type and tokens differ in length");
        }
        if (model == "llama") {
            t.kind_ = kind::sentencepiece;
            const auto it = md.find("tokenizer.ggml.scores");
            if (it == md.end() || !it->is_array() || it->size() != n) bad("tokenizer.ggml.scores is missing or not one per token");
            for (const auto& v : *it) {
                if (!v.is_number()) bad("a score is not a number");
                t.scores_.push_back(v.get<float>());
            }
            for (auto& p : t.pieces_) p = replace_all(p, "\xE2\x96\x81", " ");
            t.bos_ = id("tokenizer.ggml.bos_token_id", 1);
            t.eos_ = id("tokenizer.ggml.eos_token_id", 2);
            t.unk_ = id("tokenizer.ggml.unknown_token_id", 0);
            t.finish_sentencepiece();
        } else if (model == "gpt2") {
            t.kind_ = kind::byte_bpe;
            const auto it = md.find("tokenizer.ggml.merges");
            if (it == md.end() || !it->is_array()) bad("tokenizer.ggml.merges is missing");
            int rank = 0;
            for (const auto& v : *it) {
                auto s = gguf_string_bytes(v);
                if (!s || s->find(' ') == std::string::npos) bad("a merge is not \"left right\"");
                t.merge_rank_.emplace(*s, rank++);
            }
            // Control (3) and user-defined (4) tokens are matched whole in the text.
            for (std::size_t i = 0; i < types.size(); ++i)
                if (types[i] == 3 || types[i] == 4) t.added_.emplace_back(t.pieces_[i], static_cast<int>(i));
            const auto pre = gguf_string_bytes(md.value("tokenizer.ggml.pre", nlohmann::json(""))).value_or("");
            t.pretok_ = (pre == "llama-bpe" || pre == "llama3" || pre == "smaug-bpe") ? pretokenizer_kind::llama3
                        : pre == "qwen2"                                          ? pretokenizer_kind::qwen2
                                                                                  : pretokenizer_kind::gpt2;
            t.bos_ = id("tokenizer.ggml.bos_token_id", -1);
            t.eos_ = id("tokenizer.ggml.eos_token_id", -1);
            t.unk_ = id("tokenizer.ggml.unknown_token_id", -1);
            t.finish_byte_bpe();
        } else {
            bad("tokenizer model '" + model + "' is not supported (llama and gpt2 are)");
        }
        return t;
    }

    // From a Hugging Face tokenizer.json of a BPE model (byte-level, or converted from
    // SentencePiece). bos/eos name added tokens
    // (Hugging Face keeps them in tokenizer_config.json or config.json, not here).
    static tokenizer from_hf_json(const nlohmann::json& j, const std::string& source, const std::string& bos_token = "",
                                  const std::string& eos_token = "")
    {
        try {
            return from_hf_json_checked(j, source, bos_token, eos_token);
        } catch (const nlohmann::json::exception& e) {  // a field of an unexpected JSON type
            fail_input(source, std::string("unexpected tokenizer.json content: ") + e.what());
        }
    }
    // tokenizer.json (or a directory holding it); BOS/EOS from tokenizer_config.json beside it.
    static tokenizer read_hf(const std::string& path)
    {
        namespace fs = std::filesystem;
        fs::path file = path;
        if (fs::is_directory(file)) file /= "tokenizer.json";
        const auto j = read_json(file.string());
        std::string bos, eos;
        std::optional<bool> add_bos;
        const auto cfg_path = file.parent_path() / "tokenizer_config.json";
        std::error_code ec;
        if (fs::exists(cfg_path, ec)) {
            const auto cfg = read_json(cfg_path.string());
            auto name = [&](const char* key) -> std::string {
                if (!cfg.contains(key)) return "";
                const auto& v = cfg[key];
                if (v.is_string()) return v.get<std::string>();
                if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
                return "";
            };
            bos = name("bos_token");
            eos = name("eos_token");
            if (cfg.contains("add_bos_token") && !cfg["add_bos_token"].is_null()) {
                if (!cfg["add_bos_token"].is_boolean()) fail_input(cfg_path.string(), "add_bos_token is not a bool");
                add_bos = cfg["add_bos_token"].get<bool>();
            }
        }
        auto t = from_hf_json(j, file.string(), bos, eos);
        if (add_bos) t.add_bos_ = add_bos;
        return t;
    }

    // Sets BOS/EOS where the tokenizer file does not name them (a checkpoint's config does).
    void set_special_tokens(int bos, int eos)
    {
        if (valid(bos)) bos_ = bos;
        if (valid(eos)) eos_ = eos;
    }

    kind type() const { return kind_; }
    int bos() const { return bos_; }
    int eos() const { return eos_; }
    // Whether the model's own tokenizer prepends BOS to a text (the rule at the top of this file):
    // what encode's add_bos should be to feed the model the ids it was trained on.
    bool adds_bos() const { return bos_ >= 0 && add_bos_.value_or(kind_ == kind::sentencepiece); }
    int vocab_size() const { return static_cast<int>(pieces_.size()); }
    // The token's text as stored (SentencePiece: spaces, "<0xXX>" for bytes; byte-level BPE: in
    // GPT-2's printable byte alphabet).
    std::string piece(int token) const { return valid(token) ? pieces_[static_cast<std::size_t>(token)] : std::string(); }
    int id_of(std::string_view piece) const
    {
        const auto it = index_.find(std::string(piece));
        return it == index_.end() ? -1 : it->second;
    }

    std::vector<int> encode(std::string_view text, bool add_bos) const
    {
        std::vector<int> out;
        if (add_bos && bos_ >= 0) out.push_back(bos_);
        if (kind_ == kind::sentencepiece) encode_sentencepiece(text, out);
        else encode_byte_bpe(text, out);
        return out;
    }

    // The bytes token adds to the text after prev_token (llama2.c: the space that starts a piece
    // right after BOS is dropped; <0xXX> tokens are the byte XX).
    std::string decode(int prev_token, int token) const { return decode_piece(token, prev_token == bos_); }
    // The text of a token sequence. SentencePiece's dummy-prefix space is dropped at the start of
    // the text as after BOS (SentencePiece's own decoder strips it too), so that for a text the
    // vocabulary covers decode(encode(s, false)) is s, and decode(encode(s, true)) BOS's piece, s.
    std::string decode(const std::vector<int>& tokens) const
    {
        std::string out;
        int prev = -1;
        bool first = true;
        for (int t : tokens) {
            out += decode_piece(t, first || prev == bos_);
            prev = t;
            first = false;
        }
        return out;
    }

private:
    std::string decode_piece(int token, bool text_start) const
    {
        if (!valid(token)) return {};
        const std::string& p = pieces_[static_cast<std::size_t>(token)];
        if (kind_ == kind::sentencepiece) {
            if (const int b = byte_value(p); b >= 0) return std::string(1, static_cast<char>(b));
            if (text_start && !p.empty() && p[0] == ' ') return p.substr(1);
            return p;
        }
        if (added_ids_.count(token)) return p;
        std::string out;
        for (const auto& c : detail::decode_utf8(p)) {
            const auto it = byte_dec_.find(c.cp);
            if (it != byte_dec_.end()) out.push_back(static_cast<char>(it->second));
            else out.append(p, c.begin, c.end - c.begin);  // not in the byte alphabet: kept as is
        }
        return out;
    }

    static tokenizer from_hf_json_checked(const nlohmann::json& j, const std::string& source, const std::string& bos_token,
                                          const std::string& eos_token)
    {
        auto bad = [&](const std::string& what) { fail_input(source, what); };
        if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) bad("no \"model\" object in tokenizer.json");
        const auto& m = j["model"];
        if (m.value("type", std::string("BPE")) != "BPE") bad("tokenizer model type '" + m.value("type", std::string()) + "' is not supported (BPE is)");
        if (!m.contains("vocab") || !m["vocab"].is_object()) bad("tokenizer.json has no vocab");
        if (!m.contains("merges") || !m["merges"].is_array()) bad("tokenizer.json has no merges");
        tokenizer t;
        t.kind_ = kind::byte_bpe;
        // Ids are dense: none can exceed the number of entries (bounds the table by the file).
        const auto max_id = static_cast<std::int64_t>(m["vocab"].size()) +
                            (j.contains("added_tokens") && j["added_tokens"].is_array() ? static_cast<std::int64_t>(j["added_tokens"].size()) : 0);
        auto place = [&](const std::string& piece, std::int64_t id) {
            if (id < 0 || id >= max_id) bad("token id " + std::to_string(id) + " is out of range");
            if (static_cast<std::size_t>(id) >= t.pieces_.size()) t.pieces_.resize(static_cast<std::size_t>(id) + 1);
            t.pieces_[static_cast<std::size_t>(id)] = piece;
        };
        for (const auto& [piece, id] : m["vocab"].items()) {
            if (!id.is_number_integer()) bad("vocab id of '" + piece + "' is not an integer");
            place(piece, id.get<std::int64_t>());
        }
        int rank = 0;
        for (const auto& v : m["merges"]) {
            std::string key;
            if (v.is_string()) key = v.get<std::string>();
            else if (v.is_array() && v.size() == 2 && v[0].is_string() && v[1].is_string())
                key = v[0].get<std::string>() + " " + v[1].get<std::string>();
            else bad("a merge is neither \"a b\" nor [a, b]");
            t.merge_rank_.emplace(std::move(key), rank++);
        }
        if (j.contains("added_tokens") && j["added_tokens"].is_array())
            for (const auto& a : j["added_tokens"]) {
                if (!a.is_object() || !a.contains("id") || !a.contains("content") || !a["id"].is_number_integer() ||
                    !a["content"].is_string())
                    bad("an added token lacks id or content");
                const auto id = a["id"].get<std::int64_t>();
                place(a["content"].get<std::string>(), id);
                t.added_.emplace_back(a["content"].get<std::string>(), static_cast<int>(id));
            }
        if (m.contains("unk_token") && m["unk_token"].is_string()) {
            const auto unk = m["unk_token"].get<std::string>();
            for (std::size_t i = 0; i < t.pieces_.size(); ++i)
                if (t.pieces_[i] == unk) t.unk_ = static_cast<int>(i);
        }
        if (j.contains("post_processor") && template_starts_with_special(j["post_processor"])) t.add_bos_ = true;
        // SentencePiece models converted to tokenizer.json (Llama-2, Mistral) mark word starts
        // with U+2581 and fall back to <0xXX> bytes: encoded the SentencePiece way, each token
        // scored by the rank of the merge that forms it (earlier merges score higher).
        const std::string norm = (j.contains("normalizer") ? j["normalizer"].dump() : "") +
                                 (j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump() : "");
        if ((m.contains("byte_fallback") && m["byte_fallback"].is_boolean() && m["byte_fallback"].get<bool>()) || norm.find("\xE2\x96\x81") != std::string::npos ||
            norm.find("Metaspace") != std::string::npos) {
            t.kind_ = kind::sentencepiece;
            t.build_index();
            t.scores_.assign(t.pieces_.size(), -1e9f);
            for (const auto& [merge, r] : t.merge_rank_) {
                std::string joined = merge;
                joined.erase(joined.find(' '), 1);
                const int id = t.id_of(joined);
                if (id >= 0) t.scores_[static_cast<std::size_t>(id)] = std::max(t.scores_[static_cast<std::size_t>(id)], -static_cast<float>(r));
            }
            t.merge_rank_.clear();
            t.added_.clear();
            for (auto& p : t.pieces_) p = replace_all(p, "\xE2\x96\x81", " ");
            t.finish_sentencepiece();
            t.bos_ = bos_token.empty() ? -1 : t.id_of(bos_token);
            t.eos_ = eos_token.empty() ? -1 : t.id_of(eos_token);
            return t;
        }
        // The pre-tokenizer's pattern tells the byte-level variants apart.
        const std::string pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump() : "";
        t.pretok_ = pre.find("\\\\p{N}{1,3}") != std::string::npos ? pretokenizer_kind::llama3
                    : pre.find("\\\\p{N}") != std::string::npos && pre.find("(?i:") != std::string::npos
                        ? pretokenizer_kind::qwen2
                        : pretokenizer_kind::gpt2;
        t.finish_byte_bpe();
        t.bos_ = bos_token.empty() ? -1 : t.id_of(bos_token);
        t.eos_ = eos_token.empty() ? -1 : t.id_of(eos_token);
        return t;
    }

    // A "TemplateProcessing" post-processor, or a step of a "Sequence" of them, whose single
    // template puts a special token first ([{"SpecialToken": ...}, {"Sequence": ...}], or the
    // string form "<s> $A"): Hugging Face then prepends it to every text.
    static bool template_starts_with_special(const nlohmann::json& p)
    {
        if (!p.is_object()) return false;
        const std::string type = p.contains("type") && p["type"].is_string() ? p["type"].get<std::string>() : "";
        if (type == "Sequence" && p.contains("processors") && p["processors"].is_array()) {
            for (const auto& step : p["processors"])
                if (template_starts_with_special(step)) return true;
            return false;
        }
        if (type != "TemplateProcessing" || !p.contains("single")) return false;
        const auto& single = p["single"];
        if (single.is_array()) return !single.empty() && single[0].is_object() && single[0].contains("SpecialToken");
        if (single.is_string()) {
            const auto s = single.get<std::string>();
            const auto first = s.find_first_not_of(' ');
            return first != std::string::npos && s[first] != '$';
        }
        return false;
    }

    static std::string replace_all(std::string s, std::string_view from, std::string_view to)
    {
        for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
            s.replace(pos, from.size(), to);
        return s;
    }
    static nlohmann::json read_json(const std::string& path)
    {
        std::ifstream f(path, std::ios::binary);
        if (!f) fail_input(path, "cannot open");
        try {
            return nlohmann::json::parse(f);
        } catch (const nlohmann::json::exception& e) {
            fail_input(path, std::string("invalid JSON: ") + e.what());
        }
    }
    // "<0xXX>" -> XX, otherwise -1.
    static int byte_value(const std::string& p)
    {
        if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
        auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
        const int hi = hex(p[3]), lo = hex(p[4]);
        return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
    }
    bool valid(int token) const { return token >= 0 && token < vocab_size(); }

    void build_index()
    {
        index_.clear();
        for (std::size_t i = 0; i < pieces_.size(); ++i) index_.emplace(pieces_[i], static_cast<int>(i));  // first wins
    }
    void finish_sentencepiece()
    {
        build_index();
        for (int b = 0; b < 256; ++b) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", b);
            const int id = id_of(name);
            byte_ids_[static_cast<std::size_t>(b)] = id >= 0 ? id : unk_;
        }
    }
    // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others are
    // shifted to U+0100 onwards, so every byte is one visible character.
    void finish_byte_bpe()
    {
        build_index();
        int shift = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            const std::uint32_t cp = printable ? static_cast<std::uint32_t>(b) : 256u + static_cast<std::uint32_t>(shift++);
            std::string utf8;
            if (cp < 0x80) utf8.push_back(static_cast<char>(cp));
            else {
                utf8.push_back(static_cast<char>(0xC0 | (cp >> 6)));
                utf8.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
            }
            byte_enc_[static_cast<std::size_t>(b)] = utf8;
            byte_dec_[cp] = static_cast<std::uint8_t>(b);
        }
        std::sort(added_.begin(), added_.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
        added_.erase(std::remove_if(added_.begin(), added_.end(), [](const auto& a) { return a.first.empty(); }), added_.end());
        for (const auto& a : added_) added_ids_.emplace(a.second, a.first.size());
    }

    void encode_sentencepiece(std::string_view text, std::vector<int>& out) const
    {
        std::vector<int> toks;
        if (!text.empty()) {
            if (const int sp = id_of(" "); sp >= 0) toks.push_back(sp);
        }
        // Whole UTF-8 characters (at most 4 bytes, as llama2.c cuts them), else their bytes.
        std::size_t i = 0;
        while (i < text.size()) {
            std::size_t len = 1;
            while (i + len < text.size() && (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80 && len < 4) ++len;
            const int id = id_of(text.substr(i, len));
            if (id >= 0) toks.push_back(id);
            else
                for (std::size_t k = 0; k < len; ++k) {
                    const int b = byte_ids_[static_cast<unsigned char>(text[i + k])];
                    if (b >= 0) toks.push_back(b);
                }
            i += len;
        }
        std::string buf;
        for (;;) {
            float best_score = -1e10f;
            int best_id = -1;
            std::size_t best_idx = 0;
            for (std::size_t k = 0; k + 1 < toks.size(); ++k) {
                buf = pieces_[static_cast<std::size_t>(toks[k])];
                buf += pieces_[static_cast<std::size_t>(toks[k + 1])];
                const int id = id_of(buf);
                if (id >= 0 && scores_[static_cast<std::size_t>(id)] > best_score) {
                    best_score = scores_[static_cast<std::size_t>(id)];
                    best_id = id;
                    best_idx = k;
                }
            }
            if (best_id < 0) break;
            toks[best_idx] = best_id;
            toks.erase(toks.begin() + static_cast<std::ptrdiff_t>(best_idx) + 1);
        }
        out.insert(out.end(), toks.begin(), toks.end());
    }

    void encode_byte_bpe(std::string_view text, std::vector<int>& out) const
    {
        std::size_t start = 0, i = 0;
        while (i <= text.size()) {
            // Added tokens are matched whole, longest first.
            const std::pair<std::string, int>* hit = nullptr;
            if (i < text.size())
                for (const auto& a : added_)
                    if (text.compare(i, a.first.size(), a.first) == 0) {
                        hit = &a;
                        break;
                    }
            if (hit || i == text.size()) {
                for (auto word : pretokenize(text.substr(start, i - start), pretok_)) bpe_word(word, out);
                if (!hit) break;
                out.push_back(hit->second);
                i += hit->first.size();
                start = i;
            } else {
                ++i;
            }
        }
    }

    void bpe_word(std::string_view word, std::vector<int>& out) const
    {
        std::vector<std::string> sym;
        for (unsigned char b : word) sym.push_back(byte_enc_[b]);
        std::string key;
        for (;;) {
            int best_rank = -1;
            std::size_t best = 0;
            for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
                key = sym[k];
                key += ' ';
                key += sym[k + 1];
                const auto it = merge_rank_.find(key);
                if (it != merge_rank_.end() && (best_rank < 0 || it->second < best_rank)) {
                    best_rank = it->second;
                    best = k;
                }
            }
            if (best_rank < 0) break;
            sym[best] += sym[best + 1];
            sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
        }
        for (const auto& s : sym) {
            const int id = id_of(s);
            if (id >= 0) out.push_back(id);
            else if (unk_ >= 0) out.push_back(unk_);
        }
    }

    kind kind_ = kind::sentencepiece;
    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::unordered_map<std::string, int> index_;
    int bos_ = -1, eos_ = -1, unk_ = -1;
    std::optional<bool> add_bos_;  // what the files say, when they do (see adds_bos)
    std::array<int, 256> byte_ids_{};
    // byte-level BPE
    std::unordered_map<std::string, int> merge_rank_;
    std::vector<std::pair<std::string, int>> added_;
    std::unordered_map<int, std::size_t> added_ids_;
    pretokenizer_kind pretok_ = pretokenizer_kind::gpt2;
    std::array<std::string, 256> byte_enc_;
    std::unordered_map<std::uint32_t, std::uint8_t> byte_dec_;
};

// The tokenizer that goes with a checkpoint: tokenizer_path when given (a llama2.c tokenizer
// .bin, or a Hugging Face tokenizer.json or its directory, told apart by content); otherwise
// the GGUF file's own metadata, or tokenizer.json beside a Hugging Face checkpoint. llama2.c
// checkpoints have no tokenizer of their own: nullopt unless a path is given.
inline std::optional<tokenizer> load_tokenizer(const checkpoint& ck, const std::string& tokenizer_path = "")
{
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!tokenizer_path.empty()) {
        if (fs::is_directory(tokenizer_path, ec)) return tokenizer::read_hf(tokenizer_path);
        mapped_file f(tokenizer_path);
        std::size_t k = 0;
        while (k < f.size() && std::isspace(static_cast<unsigned char>(f.data()[k]))) ++k;
        if (k < f.size() && static_cast<char>(f.data()[k]) == '{') return tokenizer::read_hf(tokenizer_path);
        const std::int64_t vocab = ck.format == checkpoint_format::llama2c && ck.metadata.contains("vocab_size")
                                       ? ck.metadata["vocab_size"].get<std::int64_t>()
                                       : 0;
        return tokenizer::parse_llama2c(f.data(), f.size(), tokenizer_path, vocab);
    }
    if (ck.format == checkpoint_format::gguf) return tokenizer::from_gguf(ck);
    if (ck.format == checkpoint_format::safetensors) {
        fs::path dir = ck.path;
        if (!fs::is_directory(dir, ec)) dir = dir.parent_path();
        if (fs::exists(dir / "tokenizer.json", ec)) {
            auto t = tokenizer::read_hf((dir / "tokenizer.json").string());
            auto id = [&](const char* key) {
                const auto it = ck.metadata.find(key);
                return it != ck.metadata.end() && it->is_number_integer() ? it->get<int>() : -1;
            };
            if (t.bos() < 0 || t.eos() < 0) t.set_special_tokens(t.bos() < 0 ? id("bos_token_id") : t.bos(), t.eos() < 0 ? id("eos_token_id") : t.eos());
            return t;
        }
    }
    return std::nullopt;
}

}  // namespace sdlens
