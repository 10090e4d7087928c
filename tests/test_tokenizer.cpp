// Tokenizers: llama2.c's tok512.bin and the stories260K GGUF vocabulary reproduce the token ids
// llama2.c produced (logits_fox.json); a hand-made byte-level BPE gives the ids derived by hand
// below; the pre-tokenizer splits as the regex patterns would; malformed files are input_errors.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sdlens/io/gguf.hpp>
#include <sdlens/io/gguf_writer.hpp>
#include <sdlens/io/llama2c.hpp>
#include <sdlens/io/tokenizer.hpp>

#include "support.hpp"

using namespace sdlens;
using sdlens::test::temp_dir;

namespace {

nlohmann::json read_json_file(const std::filesystem::path& p)
{
    std::ifstream f(p);
    return nlohmann::json::parse(f);
}

void write_text(const std::filesystem::path& p, const std::string& s)
{
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << s;
}

std::vector<std::string> split_strings(std::string_view text, pretokenizer_kind k)
{
    std::vector<std::string> out;
    for (auto v : pretokenize(text, k)) out.emplace_back(v);
    return out;
}

// The toy byte-level vocabulary: ids and merges chosen by hand (Ġ = byte 0x20, Ċ = byte 0x0A,
// "Ã©" = bytes C3 A9 = "é", in GPT-2's byte alphabet).
const std::vector<std::string> toy_pieces = {"h",   "e",   "l",     "o",      "\xC4\xA0",        "w",     "r",
                                             "d",   ",",   "!",     "\xC4\x8A", "\xC3\x83",       "\xC2\xA9", "he",
                                             "ll",  "hell", "hello", "\xC4\xA0w", "or",          "\xC4\xA0wor",
                                             "\xC4\xA0worl", "\xC4\xA0world", "\xC3\x83\xC2\xA9"};
const std::vector<std::string> toy_merges = {"h e",           "l l",           "he ll",
                                             "hell o",        "\xC4\xA0 w",    "o r",
                                             "\xC4\xA0w or",  "\xC4\xA0wor l", "\xC4\xA0worl d",
                                             "\xC3\x83 \xC2\xA9"};
constexpr int eot = 23;

nlohmann::json toy_tokenizer_json(bool pair_merges)
{
    nlohmann::json vocab = nlohmann::json::object();
    for (std::size_t i = 0; i < toy_pieces.size(); ++i) vocab[toy_pieces[i]] = i;
    nlohmann::json merges = nlohmann::json::array();
    for (const auto& m : toy_merges) {
        if (!pair_merges) merges.push_back(m);
        else {
            const auto sp = m.find(' ');
            merges.push_back({m.substr(0, sp), m.substr(sp + 1)});
        }
    }
    return {{"version", "1.0"},
            {"added_tokens", {{{"id", eot}, {"content", "<|endoftext|>"}, {"special", true}}}},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

// The ids a toy tokenizer must give, worked out by applying the merges in rank order by hand:
// "hello" h e l l o -> he l l o -> he ll o -> hell o -> hello (16); " world" -> Ġw o r l d ->
// Ġw or l d -> Ġwor l d -> Ġworl d -> Ġworld (21); "ello" -> e ll o (1 14 3): no merge joins
// e+ll or ll+o.
void check_toy(const tokenizer& t)
{
    CHECK(t.encode("hello world", false) == std::vector<int>{16, 21});
    CHECK(t.encode("hello world", true) == std::vector<int>{eot, 16, 21});
    CHECK(t.encode("ello", false) == std::vector<int>{1, 14, 3});
    CHECK(t.encode("hello, world!\n", false) == std::vector<int>{16, 8, 21, 9, 10});
    CHECK(t.encode("\xC3\xA9", false) == std::vector<int>{22});
    CHECK(t.encode("<|endoftext|>hello<|endoftext|>", false) == std::vector<int>{eot, 16, eot});
    CHECK(t.decode(std::vector<int>{16, 8, 21, 9, 10, 22, eot}) == "hello, world!\n\xC3\xA9<|endoftext|>");
    CHECK(t.bos() == eot);
}

}  // namespace

TEST_CASE("llama2.c tok512.bin and the GGUF vocabulary encode the fox sentence as llama2.c did")
{
    auto dir = sdlens::test::stories260k();
    if (!dir) return;
    const auto fox = read_json_file(*dir / "logits_fox.json");
    const std::string text = fox["text"];
    const std::vector<int> want = fox["tokens"];  // BOS first, as llama2.c's encode adds it

    const auto ck = read_llama2c((*dir / "stories260K.bin").string());
    CHECK(!load_tokenizer(ck).has_value());  // llama2.c keeps its tokenizer elsewhere: no guessing
    const auto bin = load_tokenizer(ck, (*dir / "tok512.bin").string());
    REQUIRE(bin.has_value());
    const auto gguf_ck = read_gguf((*dir / "stories260K.gguf").string());
    const auto gg = load_tokenizer(gguf_ck);
    REQUIRE(gg.has_value());

    for (const tokenizer* t : {&*bin, &*gg}) {
        CHECK(t->vocab_size() == 512);
        CHECK(t->bos() == 1);
        CHECK(t->eos() == 2);
        CHECK(t->adds_bos());  // SentencePiece, as run.c and llama.cpp encode
        const auto ids = t->encode(text, true);
        CHECK(ids == want);
        // Decoding after BOS drops the dummy-prefix space: the text comes back exactly.
        std::string back;
        for (std::size_t i = 1; i < ids.size(); ++i) back += t->decode(ids[i - 1], ids[i]);
        CHECK(back == text);
        CHECK(t->piece(want[1]).front() == ' ');
        CHECK(t->decode(1, want[1]) == t->piece(want[1]).substr(1));
        // Characters outside the vocabulary fall back to byte tokens, id = byte + 3.
        const auto cjk = t->encode("\xE6\x97\xA5", false);
        CHECK(cjk == std::vector<int>{t->id_of(" "), 0xE6 + 3, 0x97 + 3, 0xA5 + 3});
        CHECK(t->decode(5, 0xE6 + 3) == "\xE6");
        CHECK(t->encode("", true) == std::vector<int>{1});
    }
}

TEST_CASE("byte-level BPE from a hand-made tokenizer.json")
{
    temp_dir tmp;
    for (bool pairs : {false, true}) {
        INFO("merges as " << (pairs ? "pairs" : "strings"));
        write_text(tmp / "tokenizer.json", toy_tokenizer_json(pairs).dump());
        write_text(tmp / "tokenizer_config.json", R"({"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|endoftext|>"})");
        const auto t = tokenizer::read_hf(tmp.path().string());
        CHECK(t.type() == tokenizer::kind::byte_bpe);
        CHECK(t.eos() == eot);
        check_toy(t);
    }
    // A tokenizer path pointing at the JSON is recognized by content.
    checkpoint none;
    none.format = checkpoint_format::gguf;
    const auto t = load_tokenizer(none, (tmp / "tokenizer.json").string());
    REQUIRE(t.has_value());
    CHECK(t->encode("hello world", false) == std::vector<int>{16, 21});
}

TEST_CASE("a SentencePiece model converted to tokenizer.json encodes the SentencePiece way")
{
    // Llama-2 style: U+2581 word marks, byte fallback. Merge ranks give the scores: "ab" (rank
    // 0) beats "\u2581a" (rank 1), then "\u2581ab" forms; "!" is not in the vocabulary and
    // falls back to <0x21>. By hand: [BOS, ▁ab, <0x21>] = [1, 8, 9].
    const std::string mark = "\xE2\x96\x81";
    nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1},         {"</s>", 2},     {mark, 3},      {"a", 4},
                            {"b", 5},     {mark + "a", 6},    {"ab", 7},       {mark + "ab", 8}, {"<0x21>", 9}};
    const nlohmann::json j = {
        {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", mark}}}}}},
        {"model", {{"type", "BPE"}, {"byte_fallback", true}, {"unk_token", "<unk>"}, {"vocab", vocab},
                   {"merges", {"a b", mark + " a", mark + " ab"}}}}};
    const auto t = tokenizer::from_hf_json(j, "tokenizer.json", "<s>", "</s>");
    CHECK(t.type() == tokenizer::kind::sentencepiece);
    const auto ids = t.encode("ab!", true);
    CHECK(ids == std::vector<int>{1, 8, 9});
    CHECK(t.decode(1, 8) == "ab");
    CHECK(t.decode(8, 9) == "!");
    CHECK(t.encode("ba", false) == std::vector<int>{3, 5, 4});
    CHECK(t.eos() == 2);
    CHECK_THROWS_AS(tokenizer::from_hf_json({{"model", {{"type", 5}}}}, "x.json"), input_error);
    CHECK_THROWS_AS(tokenizer::from_hf_json({{"model", {{"type", "BPE"}, {"vocab", {{"a", 100000000}}}, {"merges", nlohmann::json::array()}}}}, "x.json"),
                    input_error);
}

TEST_CASE("byte-level BPE from GGUF metadata (tokenizer.ggml.model gpt2)")
{
    temp_dir tmp;
    gguf_writer w;
    auto pieces = toy_pieces;
    pieces.push_back("<|endoftext|>");
    std::vector<std::int32_t> types(pieces.size(), 1);
    types.back() = 3;  // control
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", "gpt-2");
    w.add_string_array("tokenizer.ggml.tokens", pieces);
    w.add_i32_array("tokenizer.ggml.token_type", types);
    w.add_string_array("tokenizer.ggml.merges", toy_merges);
    w.add_u32("tokenizer.ggml.bos_token_id", eot);
    const auto path = (tmp / "tok.gguf").string();
    w.write(path);
    const auto t = load_tokenizer(read_gguf(path));
    REQUIRE(t.has_value());
    check_toy(*t);
}

TEST_CASE("adds_bos: tokenizer_config.json add_bos_token decides, else the kind (SentencePiece adds BOS)")
{
    // The Llama-2 style tokenizer.json of the SentencePiece case above, in a directory.
    const std::string mark = "\xE2\x96\x81";
    const nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {mark, 3}, {"a", 4}, {"<0x21>", 5}};
    const nlohmann::json j = {{"model", {{"type", "BPE"}, {"byte_fallback", true}, {"unk_token", "<unk>"}, {"vocab", vocab},
                                         {"merges", nlohmann::json::array()}}}};
    temp_dir tmp;
    write_text(tmp / "tokenizer.json", j.dump());
    write_text(tmp / "tokenizer_config.json", R"({"bos_token": "<s>", "eos_token": "</s>"})");
    const auto said_nothing = tokenizer::read_hf(tmp.path().string());
    CHECK(said_nothing.type() == tokenizer::kind::sentencepiece);
    CHECK(said_nothing.adds_bos());
    write_text(tmp / "tokenizer_config.json", R"({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": false})");
    const auto said_no = tokenizer::read_hf(tmp.path().string());
    CHECK(said_no.bos() == 1);
    CHECK(!said_no.adds_bos());
    CHECK(said_no.encode("a", said_no.adds_bos()) == std::vector<int>{3, 4});
    // No BOS token, nothing to add.
    CHECK(!tokenizer::from_hf_json(j, "tokenizer.json").adds_bos());
    write_text(tmp / "tokenizer_config.json", R"({"bos_token": "<s>", "add_bos_token": "yes"})");
    CHECK_THROWS_AS(tokenizer::read_hf(tmp.path().string()), input_error);

    // Byte-level BPE adds nothing unless the config says so.
    write_text(tmp / "tokenizer.json", toy_tokenizer_json(false).dump());
    write_text(tmp / "tokenizer_config.json", R"({"bos_token": "<|endoftext|>"})");
    CHECK(!tokenizer::read_hf(tmp.path().string()).adds_bos());
    write_text(tmp / "tokenizer_config.json", R"({"bos_token": "<|endoftext|>", "add_bos_token": true})");
    CHECK(tokenizer::read_hf(tmp.path().string()).adds_bos());
}

TEST_CASE("adds_bos: a TemplateProcessing post-processor that starts with a special token (Llama-3)")
{
    const nlohmann::json bos_first = {
        {"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<|endoftext|>", {{"id", "<|endoftext|>"}, {"ids", {eot}}, {"tokens", {"<|endoftext|>"}}}}}}};
    const nlohmann::json text_only = {{"type", "TemplateProcessing"},
                                      {"single", {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                                      {"special_tokens", nlohmann::json::object()}};
    auto with = [](const nlohmann::json& post) {
        auto j = toy_tokenizer_json(false);
        j["post_processor"] = post;
        return tokenizer::from_hf_json(j, "tokenizer.json", "<|endoftext|>");
    };
    CHECK(!with(nullptr).adds_bos());  // byte-level BPE
    CHECK(with(bos_first).adds_bos());
    CHECK(!with(text_only).adds_bos());
    // Llama-3's own: a Sequence of ByteLevel and TemplateProcessing.
    const nlohmann::json llama3 = {
        {"type", "Sequence"},
        {"processors", {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}}, bos_first}}};
    const auto t = with(llama3);
    CHECK(t.adds_bos());
    CHECK(t.encode("hello world", t.adds_bos()) == std::vector<int>{eot, 16, 21});
    // The string form of a template.
    CHECK(with({{"type", "TemplateProcessing"}, {"single", "<|endoftext|> $A"}}).adds_bos());
    CHECK(!with({{"type", "TemplateProcessing"}, {"single", "$A"}}).adds_bos());
    // tokenizer_config.json, when it says, overrides the template.
    temp_dir tmp;
    auto j = toy_tokenizer_json(false);
    j["post_processor"] = llama3;
    write_text(tmp / "tokenizer.json", j.dump());
    write_text(tmp / "tokenizer_config.json", R"({"bos_token": "<|endoftext|>", "add_bos_token": false})");
    CHECK(!tokenizer::read_hf(tmp.path().string()).adds_bos());
    write_text(tmp / "tokenizer_config.json", R"({"bos_token": "<|endoftext|>"})");
    CHECK(tokenizer::read_hf(tmp.path().string()).adds_bos());
}

TEST_CASE("adds_bos: GGUF tokenizer.ggml.add_bos_token decides, else the tokenizer model")
{
    temp_dir tmp;
    auto pieces = toy_pieces;
    pieces.push_back("<|endoftext|>");
    std::vector<std::int32_t> types(pieces.size(), 1);
    types.back() = 3;
    // add_bos: absent, true, false, not a bool.
    auto byte_level = [&](int add_bos) {
        gguf_writer w;
        w.add_string("tokenizer.ggml.model", "gpt2");
        w.add_string_array("tokenizer.ggml.tokens", pieces);
        w.add_i32_array("tokenizer.ggml.token_type", types);
        w.add_string_array("tokenizer.ggml.merges", toy_merges);
        w.add_u32("tokenizer.ggml.bos_token_id", eot);
        if (add_bos == 0 || add_bos == 1) w.add_bool("tokenizer.ggml.add_bos_token", add_bos == 1);
        if (add_bos == 2) w.add_u32("tokenizer.ggml.add_bos_token", 1);
        const auto path = (tmp / ("bpe" + std::to_string(add_bos) + ".gguf")).string();
        w.write(path);
        return read_gguf(path);
    };
    CHECK(!load_tokenizer(byte_level(-1))->adds_bos());
    CHECK(load_tokenizer(byte_level(1))->adds_bos());
    CHECK(load_tokenizer(byte_level(1))->encode("hello", true) == std::vector<int>{eot, 16});
    CHECK(!load_tokenizer(byte_level(0))->adds_bos());
    CHECK_THROWS_AS(load_tokenizer(byte_level(2)), input_error);

    // SentencePiece ("llama"): adds BOS unless the file says it does not.
    auto sentencepiece = [&](int add_bos) {
        gguf_writer w;
        w.add_string("tokenizer.ggml.model", "llama");
        w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a"});
        w.add_f32_array("tokenizer.ggml.scores", {0.f, 0.f, 0.f, 0.f, 0.f});
        w.add_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1});
        if (add_bos >= 0) w.add_bool("tokenizer.ggml.add_bos_token", add_bos == 1);
        const auto path = (tmp / ("spm" + std::to_string(add_bos) + ".gguf")).string();
        w.write(path);
        return read_gguf(path);
    };
    const auto spm = load_tokenizer(sentencepiece(-1));
    REQUIRE(spm);
    CHECK(spm->bos() == 1);  // llama.cpp's default id
    CHECK(spm->adds_bos());
    CHECK(!load_tokenizer(sentencepiece(0))->adds_bos());
}

TEST_CASE("pre-tokenizer splits as the GPT-2, Llama-3 and Qwen2 patterns")
{
    using V = std::vector<std::string>;
    // GPT-2: a run of spaces leaves its last one to the next word; letters, digits, other
    // characters each take one optional leading space; contractions are case-sensitive.
    CHECK(split_strings("Hello world  foo's 123!!\n", pretokenizer_kind::gpt2) ==
          V{"Hello", " world", " ", " foo", "'s", " 123", "!!", "\n"});
    CHECK(split_strings("I'M ok", pretokenizer_kind::gpt2) == V{"I", "'", "M", " ok"});
    CHECK(split_strings("caf\xC3\xA9 \xE2\x80\x94 x", pretokenizer_kind::gpt2) == V{"caf\xC3\xA9", " \xE2\x80\x94", " x"});
    // Llama-3: digits in threes, one non-letter may lead a word, newlines run together.
    CHECK(split_strings("abc 12345 x\n\ny", pretokenizer_kind::llama3) == V{"abc", " ", "123", "45", " x", "\n\n", "y"});
    CHECK(split_strings("I'M (ok)...\n", pretokenizer_kind::llama3) == V{"I", "'M", " (", "ok", ")...\n"});
    // Qwen2: one digit at a time.
    CHECK(split_strings("x 2024", pretokenizer_kind::qwen2) == V{"x", " ", "2", "0", "2", "4"});
    // The pieces always concatenate back to the text, invalid UTF-8 included.
    const std::string messy = "a\xFF\xC3 \t\t b\r\n\n 1\xE2\x82";
    for (auto k : {pretokenizer_kind::gpt2, pretokenizer_kind::llama3, pretokenizer_kind::qwen2}) {
        std::string joined;
        for (const auto& p : split_strings(messy, k)) joined += p;
        CHECK(joined == messy);
    }
}

TEST_CASE("malformed tokenizer files are input_errors naming the file")
{
    temp_dir tmp;
    auto expect = [&](const std::string& bytes, const std::string& what, std::int64_t vocab = 0) {
        const auto path = (tmp / "tok.bin").string();
        write_text(path, bytes);
        try {
            tokenizer::read_llama2c(path, vocab);
            FAIL("no error; expected " << what);
        } catch (const input_error& e) {
            const std::string msg = e.what();
            CHECK_MESSAGE(msg.rfind(path + ": ", 0) == 0, msg);
            CHECK_MESSAGE(msg.find(what) != std::string::npos, msg);
        }
    };
    auto i32 = [](std::int32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
    auto f32 = [](float v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
    expect(i32(4) + f32(0) + i32(2) + "ab" + f32(0) + i32(3) + "ab", "truncated");
    expect(i32(4) + f32(0) + i32(9) + "abcdefghi", "length 9");
    expect(i32(4) + f32(0) + i32(-1), "length -1");
    expect(i32(0), "max token length");
    expect(i32(4) + f32(0) + i32(2) + "ab", "holds 1 tokens", 512);

    write_text(tmp / "bad.json", "{\"model\": {\"type\": \"Unigram\"}}");
    CHECK_THROWS_AS(tokenizer::read_hf((tmp / "bad.json").string()), input_error);
    write_text(tmp / "broken.json", "{\"model\": ");
    try {
        tokenizer::read_hf((tmp / "broken.json").string());
        FAIL("no error");
    } catch (const input_error& e) {
        CHECK(std::string(e.what()).find("broken.json: invalid JSON") != std::string::npos);
    }
}
