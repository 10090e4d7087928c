// GGUF: the stories260K fixture reads as llama2.c describes the model, metadata of every type
// survives a write/read, write_gguf_checkpoint round-trips every family (exactly for float
// types, within each block format's step for quantized ones), and malformed files are
// input_errors naming the file.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <random>
#include <string>
#include <vector>

#include <sdlens/io/gguf.hpp>
#include <sdlens/io/gguf_writer.hpp>
#include <sdlens/io/tokenizer.hpp>
#include <sdlens/model/gguf_families.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>

#include "support.hpp"

using namespace sdlens;
using sdlens::test::temp_dir;

namespace {

std::vector<std::byte> file_bytes(const std::filesystem::path& p)
{
    std::ifstream in(p, std::ios::binary);
    std::vector<char> c{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::vector<std::byte> b(c.size());
    std::memcpy(b.data(), c.data(), c.size());
    return b;
}

void put_bytes(const std::filesystem::path& p, const std::vector<std::byte>& b)
{
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

template <class T>
void poke(std::vector<std::byte>& b, std::size_t at, T v)
{
    REQUIRE(at + sizeof(T) <= b.size());
    std::memcpy(b.data() + at, &v, sizeof(T));
}

// Offset of the first occurrence of s in b (a tensor name or key), or fails the test.
std::size_t find_text(const std::vector<std::byte>& b, const std::string& s)
{
    for (std::size_t i = 0; i + s.size() <= b.size(); ++i)
        if (std::memcmp(b.data() + i, s.data(), s.size()) == 0) return i;
    FAIL("'" << s << "' not found");
    return 0;
}

// Parsing the bytes must fail with an input_error that names the source and says `what`.
void expect_input_error(const std::vector<std::byte>& b, const std::string& what)
{
    const std::string source = "/some/dir/model.gguf";
    try {
        parse_gguf(b.data(), b.size(), source);
        FAIL("no error; expected: " << what);
    } catch (const input_error& e) {
        const std::string msg = e.what();
        CHECK_MESSAGE(msg.rfind(source + ": ", 0) == 0, msg);
        CHECK_MESSAGE(msg.find(what) != std::string::npos, msg);
    }
}

// A small valid file: a few key/values and two tensors a (2, 32) and b (3, 32) in f32.
std::vector<std::byte> small_gguf()
{
    gguf_writer w;
    w.add_string("general.architecture", "llama");
    w.add_u32("some.count", 7);
    w.add_string_array("some.names", {"x", "yy"});
    std::vector<float> a(64), bb(96);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i);
    for (std::size_t i = 0; i < bb.size(); ++i) bb[i] = -static_cast<float>(i);
    w.add_tensor("a.weight", dtype::f32, {2, 32}, a.data());
    w.add_tensor("b.weight", dtype::f32, {3, 32}, bb.data());
    return w.bytes();
}

// Byte offset of a tensor description's fields, found by its name.
struct info_at {
    std::size_t n_dims, ne0, type, offset;
};
info_at tensor_info_at(const std::vector<std::byte>& b, const std::string& name, std::uint32_t n_dims = 2)
{
    const std::size_t at = find_text(b, name) + name.size();
    return {at, at + 4, at + 4 + 8 * n_dims, at + 8 + 8 * n_dims};
}

// Per-block error bound of a block format, from its step sizes (see test_quant.cpp).
float block_bound(dtype t, const float* x, int n)
{
    constexpr float slack = 1.0f + 1.0f / 1024.0f;  // f16 scales rounded up
    auto amax = [&](const float* p, int k) {
        float m = 0;
        for (int i = 0; i < k; ++i) m = std::max(m, std::fabs(p[i]));
        return m;
    };
    switch (t) {
    case dtype::q8_0: return 0.5f * amax(x, n) / 127.0f * slack;
    case dtype::q4_0: return amax(x, n) / 8.0f * slack;
    case dtype::q4_k: {
        float max_low = 0, max_range = 0;
        for (int s = 0; s < 8; ++s) {
            float lo = 0, hi = 0;
            for (int l = 0; l < 32; ++l) lo = std::min(lo, x[32 * s + l]), hi = std::max(hi, x[32 * s + l]);
            max_low = std::max(max_low, -lo);
            max_range = std::max(max_range, hi - lo);
        }
        const float dmin = max_low / 63.0f * slack;
        const float d = (max_range + dmin) / 15.0f / 63.0f * slack;
        return 0.5f * ((max_range + dmin) / 15.0f + d) * 1.0001f;
    }
    case dtype::q6_k: {
        const float d = amax(x, 256) / 31.0f / 127.0f * slack;
        return 0.5f * (amax(x, 256) / 31.0f + d) * 1.0001f;
    }
    default: return 0.0f;
    }
}

// Checks that got (decoded from a file) matches want as the stored dtype allows: bit-exact for
// f32, equal to want rounded to f16/bf16, within the block bound for quantized types.
void check_matrix(const row_matrix<float>& want, const row_matrix<float>& got, dtype t, const std::string& what)
{
    INFO(what << " as " << dtype_name(t));
    REQUIRE(want.rows() == got.rows());
    REQUIRE(want.cols() == got.cols());
    if (!is_block_quantized(t)) {
        bool same = true;
        for (Eigen::Index i = 0; i < want.size(); ++i) {
            const float x = want.data()[i];
            const float r = t == dtype::f32 ? x : t == dtype::f16 ? f16_to_float(float_to_f16(x)) : bf16_to_float(float_to_bf16(x));
            same = same && r == got.data()[i];
        }
        CHECK(same);
        return;
    }
    const int be = static_cast<int>(layout_of(t).block_elems);
    bool within = true;
    for (Eigen::Index r = 0; r < want.rows(); ++r)
        for (Eigen::Index c0 = 0; c0 < want.cols(); c0 += be) {
            const float bound = block_bound(t, want.row(r).data() + c0, be);
            for (int j = 0; j < be; ++j) within = within && std::fabs(want(r, c0 + j) - got(r, c0 + j)) <= bound + 1e-7f;
        }
    CHECK(within);
}

void check_vector(const Eigen::VectorXf& want, const Eigen::VectorXf& got, const std::string& what)
{
    INFO(what);
    REQUIRE(want.size() == got.size());
    CHECK(want == got);  // vectors are always stored as f32
}

// Rows of each head reordered from half rotation to adjacent rotation, written out from
// convert_hf_to_gguf's permute: reshape (heads, 2, hd/2, in), swap axes 1 and 2.
row_matrix<float> hf_to_gguf_permute(const row_matrix<float>& w, std::int64_t heads)
{
    const std::int64_t hd = w.rows() / heads;
    row_matrix<float> out(w.rows(), w.cols());
    for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t i = 0; i < hd / 2; ++i)
            for (std::int64_t j = 0; j < 2; ++j) out.row(h * hd + 2 * i + j) = w.row(h * hd + j * (hd / 2) + i);
    return out;
}

dtype view_type(const matrix_view& v) { return v.tensor->type; }

}  // namespace

TEST_CASE("GGUF stories260K: header, metadata and f32 tensors as llama2.c describes the model")
{
    auto dir = sdlens::test::stories260k();
    if (!dir) return;
    const auto path = (*dir / "stories260K.gguf").string();
    const auto ck = read_gguf(path);
    CHECK(ck.format == checkpoint_format::gguf);
    CHECK(ck.metadata["general.architecture"] == "llama");
    CHECK(ck.metadata["tokenizer.ggml.tokens"].size() == 512);
    CHECK(ck.metadata["tokenizer.ggml.tokens"][1] == "<s>");
    CHECK(ck.tensors.tensors().size() == 48);  // 3 + 9 per layer * 5
    const auto& q = ck.tensors.at("blk.0.attn_q.weight");
    CHECK(q.type == dtype::f32);
    CHECK(q.shape == std::vector<std::int64_t>{64, 64});
    CHECK(ck.tensors.at("blk.3.ffn_down.weight").shape == std::vector<std::int64_t>{64, 172});  // ne = (172, 64)

    const model m = load_model(path);
    CHECK(m.config.family == model_family::llama);
    CHECK(m.config.hidden_size == 64);
    CHECK(m.config.num_layers == 5);
    CHECK(m.config.num_heads == 8);
    CHECK(m.config.num_kv_heads == 4);
    CHECK(m.config.head_dim == 8);
    CHECK(m.config.ffn_size == 172);
    CHECK(m.config.vocab_size == 512);
    CHECK(m.config.rope == rope_style::adjacent);
    CHECK(m.config.rotary_dims == 8);
    CHECK(m.config.norm == norm_kind::rms);
    CHECK(m.config.bos_token == 1);
    CHECK(m.config.eos_token == 2);
    CHECK(!m.config.tied_embeddings);  // the file carries output.weight (a copy of the embedding)
    CHECK(m.layers.size() == 5);
    CHECK(m.layers[2].wk.rows == 32);
}

TEST_CASE("GGUF metadata of every type, nested arrays and non-UTF-8 strings survive write and read")
{
    temp_dir tmp;
    gguf_writer w(64);
    w.add_u8("t.u8", 200);
    w.add_i8("t.i8", -100);
    w.add_u16("t.u16", 60000);
    w.add_i16("t.i16", -30000);
    w.add_u32("t.u32", 4000000000u);
    w.add_i32("t.i32", -2000000000);
    w.add_u64("t.u64", 18000000000000000000ull);
    w.add_i64("t.i64", -9000000000000000000ll);
    w.add_f32("t.f32", 0.25f);
    w.add_f64("t.f64", -1e300);
    w.add_bool("t.bool", true);
    w.add_string("t.str", "h\xC3\xA9llo");
    w.add_string("t.bytes", std::string("\xFF\x00\xC3", 3));
    w.add_f32_array("t.f32s", {1.5f, -2.0f});
    w.add_i32_array("t.i32s", {});
    w.add_string_array("t.strs", {"a", std::string("\x80", 1)});
    // [[1, 2], [3]] as an array of arrays of u8, encoded by hand.
    std::vector<std::byte> nested;
    auto put = [&](auto v) {
        const auto n = nested.size();
        nested.resize(n + sizeof(v));
        std::memcpy(nested.data() + n, &v, sizeof(v));
    };
    put(std::uint32_t{9});  // element type: array
    put(std::uint64_t{2});
    put(std::uint32_t{0});
    put(std::uint64_t{2});
    put(std::uint8_t{1});
    put(std::uint8_t{2});
    put(std::uint32_t{0});
    put(std::uint64_t{1});
    put(std::uint8_t{3});
    w.add_raw("t.nested", 9, nested);
    const float v[32] = {1.0f};
    w.add_tensor("x", dtype::f32, {32}, v);
    const auto path = (tmp / "meta.gguf").string();
    w.write(path);

    const auto ck = read_gguf(path);
    const auto& md = ck.metadata;
    CHECK(md["general.alignment"] == 64);
    CHECK(md["t.u8"] == 200);
    CHECK(md["t.i8"] == -100);
    CHECK(md["t.u16"] == 60000);
    CHECK(md["t.i16"] == -30000);
    CHECK(md["t.u32"] == 4000000000u);
    CHECK(md["t.i32"] == -2000000000);
    CHECK(md["t.u64"].get<std::uint64_t>() == 18000000000000000000ull);
    CHECK(md["t.i64"].get<std::int64_t>() == -9000000000000000000ll);
    CHECK(md["t.f32"] == 0.25);
    CHECK(md["t.f64"] == -1e300);
    CHECK(md["t.bool"] == true);
    CHECK(md["t.str"] == "h\xC3\xA9llo");
    CHECK(md["t.bytes"].is_binary());
    CHECK(gguf_string_bytes(md["t.bytes"]) == std::string("\xFF\x00\xC3", 3));
    CHECK(md["t.f32s"] == nlohmann::json({1.5, -2.0}));
    CHECK(md["t.i32s"] == nlohmann::json::array());
    CHECK(md["t.strs"][0] == "a");
    CHECK(gguf_string_bytes(md["t.strs"][1]) == std::string("\x80", 1));
    CHECK(md["t.nested"] == nlohmann::json({{1, 2}, {3}}));
    CHECK_NOTHROW((void)md.dump());  // binary values keep the dump valid
    // The tensor sits at a multiple of the custom alignment from the file start.
    const auto& x = ck.tensors.at("x");
    float first;
    std::memcpy(&first, x.data, 4);
    CHECK(first == 1.0f);
    // The only tensor ends the file and starts at a multiple of the custom alignment.
    CHECK((file_bytes(path).size() - 32 * 4) % 64 == 0);
}

TEST_CASE("write_gguf_checkpoint round-trips every family through load_model")
{
    temp_dir tmp;
    struct family_case {
        model_family family;
        falcon_variant falcon;
    };
    const family_case cases[] = {{model_family::llama, falcon_variant::new_decoder}, {model_family::qwen2, falcon_variant::new_decoder},
                                 {model_family::phi3, falcon_variant::new_decoder},  {model_family::gpt2, falcon_variant::new_decoder},
                                 {model_family::neox, falcon_variant::new_decoder},  {model_family::falcon, falcon_variant::new_decoder},
                                 {model_family::falcon, falcon_variant::multi_query}};
    for (const auto& fc : cases)
        for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0}) {
            const model_config c = small_config(fc.family, fc.falcon);
            const dense_weights w = random_weights(c, 1234);
            const auto path = (tmp / (std::string(family_name(c.family)) + "_" + dtype_name(t) + ".gguf")).string();
            write_gguf_checkpoint(path, c, w, t);
            const model m = load_model(path);
            const dense_weights r = materialize(m);
            INFO(family_name(c.family) << " " << dtype_name(t));

            const auto& g = m.config;
            CHECK(g.family == c.family);
            CHECK(g.hidden_size == c.hidden_size);
            CHECK(g.num_layers == c.num_layers);
            CHECK(g.num_heads == c.num_heads);
            CHECK(g.num_kv_heads == c.num_kv_heads);
            CHECK(g.head_dim == c.head_dim);
            CHECK(g.ffn_size == c.ffn_size);
            CHECK(g.vocab_size == c.vocab_size);
            CHECK(g.max_positions == c.max_positions);
            CHECK(g.norm == c.norm);
            CHECK(g.norm_eps == doctest::Approx(c.norm_eps).epsilon(1e-6));  // stored as f32
            CHECK(g.activation == c.activation);
            CHECK(g.parallel_residual == c.parallel_residual);
            CHECK(g.shared_input_norm == c.shared_input_norm);
            CHECK(g.rotary_dims == c.rotary_dims);
            CHECK(g.rope_theta == doctest::Approx(c.rope_theta).epsilon(1e-6));
            CHECK(g.learned_positions == c.learned_positions);
            // GPT-2 files carry the tied embedding again as output.weight, as llama.cpp needs.
            const bool head_copied = c.tied_embeddings && c.family == model_family::gpt2;
            CHECK(g.tied_embeddings == (c.tied_embeddings && !head_copied));
            CHECK(g.bias.qkv == c.bias.qkv);
            CHECK(g.bias.o == c.bias.o);
            CHECK(g.bias.ffn == c.bias.ffn);
            CHECK(g.bias.norm == c.bias.norm);
            CHECK(g.bos_token == c.bos_token);
            CHECK(g.eos_token == c.eos_token);
            // llama.cpp's Llama rotates adjacent pairs: Hugging Face rows (half) were permuted.
            const bool permuted = c.family == model_family::llama;
            CHECK(g.rope == (permuted ? rope_style::adjacent : c.rope));

            check_matrix(w.token_embedding, r.token_embedding, view_type(m.token_embedding), "token_embd");
            if (c.learned_positions) check_matrix(w.position_embedding, r.position_embedding, view_type(m.position_embedding), "position_embd");
            if (!c.tied_embeddings) check_matrix(w.lm_head, r.lm_head, view_type(m.lm_head), "output");
            if (head_copied) check_matrix(w.token_embedding, r.lm_head, view_type(m.lm_head), "output");
            check_vector(w.final_norm, r.final_norm, "output_norm");
            check_vector(w.final_norm_bias, r.final_norm_bias, "output_norm.bias");
            for (std::size_t l = 0; l < w.layers.size(); ++l) {
                const auto& a = w.layers[l];
                const auto& b = r.layers[l];
                const auto& v = m.layers[l];
                check_matrix(permuted ? hf_to_gguf_permute(a.wq, c.num_heads) : a.wq, b.wq, view_type(v.wq), "wq");
                check_matrix(permuted ? hf_to_gguf_permute(a.wk, c.num_kv_heads) : a.wk, b.wk, view_type(v.wk), "wk");
                check_matrix(a.wv, b.wv, view_type(v.wv), "wv");
                check_matrix(a.wo, b.wo, view_type(v.wo), "wo");
                if (a.w_gate.size()) check_matrix(a.w_gate, b.w_gate, view_type(v.w_gate), "w_gate");
                check_matrix(a.w_up, b.w_up, view_type(v.w_up), "w_up");
                check_matrix(a.w_down, b.w_down, view_type(v.w_down), "w_down");
                check_vector(a.bq, b.bq, "bq");
                check_vector(a.bk, b.bk, "bk");
                check_vector(a.bv, b.bv, "bv");
                check_vector(a.bo, b.bo, "bo");
                check_vector(a.attn_norm, b.attn_norm, "attn_norm");
                check_vector(a.attn_norm_bias, b.attn_norm_bias, "attn_norm.bias");
                check_vector(a.ffn_norm, b.ffn_norm, "ffn_norm");
                check_vector(a.ffn_norm_bias, b.ffn_norm_bias, "ffn_norm.bias");
                check_vector(a.b_up, b.b_up, "b_up");
                check_vector(a.b_down, b.b_down, "b_down");
                CHECK(view_type(v.wv) == t);  // rows of 64 are whole blocks of every type here
            }
        }
}

TEST_CASE("write_gguf_checkpoint: a placeholder vocabulary of bytes, so text tokenizes and llama.cpp loads the file")
{
    temp_dir tmp;
    // 128 ids: <unk> 0, BOS 1, EOS 2, the word boundary 3, "." 13 (the delimiter), bytes
    // 0x00..0x7C but 0x20 and 0x2E (which the boundary and "." cover).
    model_config small = small_config(model_family::llama);
    model_config shared_end = small_config(model_family::gpt2);  // BOS = EOS = 127
    model_config large = small_config(model_family::llama);
    large.vocab_size = 300;  // every byte, then fillers
    for (const model_config& c : {small, shared_end, large}) {
        CAPTURE(c.vocab_size);
        CAPTURE(family_name(c.family));
        const auto path = (tmp / (std::string(family_name(c.family)) + std::to_string(c.vocab_size) + ".gguf")).string();
        write_gguf_checkpoint(path, c, random_weights(c, 5), dtype::f32);
        const model m = load_model(path);
        const std::optional<tokenizer> tok = load_tokenizer(*m.source);
        REQUIRE(tok);
        CHECK(tok->vocab_size() == c.vocab_size);
        CHECK(tok->bos() == c.bos_token);
        CHECK(tok->eos() == c.eos_token);
        std::set<std::string> distinct;
        for (int i = 0; i < tok->vocab_size(); ++i) distinct.insert(tok->piece(i));
        CHECK(distinct.size() == static_cast<std::size_t>(c.vocab_size));  // llama.cpp maps text to id
        CHECK(tok->id_of("<0x0A>") >= 0);  // llama.cpp looks up the newline byte
        CHECK(tok->id_of(".") == default_delimiter_token(c));
        CHECK(tok->id_of(".") == 13);
        CHECK(tok->adds_bos() == (c.family != model_family::gpt2));
        // The dummy prefix and every space are the word boundary, every other byte its <0xXX>.
        const int boundary = tok->id_of(" ");
        REQUIRE(boundary >= 0);
        CHECK(tok->piece(boundary) == " ");
        const std::string text = c.vocab_size >= 259 ? "caf\xC3\xA9\n" : "hi there\n";
        std::vector<int> want{boundary};
        for (unsigned char b : text) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", b);
            want.push_back(b == ' ' ? boundary : tok->id_of(name));
        }
        const std::vector<int> ids = tok->encode(text, false);
        CHECK(ids == want);
        for (std::size_t i = 1; i < ids.size(); ++i)
            if (ids[i] != boundary) CHECK(tok->piece(ids[i]).rfind("<0x", 0) == 0);
        std::string back;
        for (int id : ids) back += tok->decode(-1, id);
        CHECK(back.find(text) != std::string::npos);
        CHECK(tok->decode(ids) == text);
    }
}

TEST_CASE("write_gguf_checkpoint: k-quants and Q4_0 on rows of whole 256-blocks, Q8_0/F16 fallback otherwise")
{
    temp_dir tmp;
    model_config c = small_config(model_family::qwen2);
    c.hidden_size = 256;
    c.ffn_size = 288;  // w_down rows of 288: not whole 256-blocks, whole 32-blocks
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 64;
    c.rotary_dims = 64;
    c.num_layers = 1;
    c.vocab_size = 16;
    const dense_weights w = random_weights(c, 99);
    for (dtype t : {dtype::q4_0, dtype::q4_k, dtype::q6_k}) {
        const auto path = (tmp / (std::string(dtype_name(t)) + ".gguf")).string();
        write_gguf_checkpoint(path, c, w, t);
        const model m = load_model(path);
        const dense_weights r = materialize(m);
        INFO(dtype_name(t));
        CHECK(view_type(m.layers[0].wq) == t);
        CHECK(view_type(m.layers[0].w_down) == (t == dtype::q4_0 ? dtype::q4_0 : dtype::q8_0));
        check_matrix(w.token_embedding, r.token_embedding, view_type(m.token_embedding), "token_embd");
        check_matrix(w.layers[0].wq, r.layers[0].wq, view_type(m.layers[0].wq), "wq");
        check_matrix(w.layers[0].wk, r.layers[0].wk, view_type(m.layers[0].wk), "wk");
        check_matrix(w.layers[0].w_gate, r.layers[0].w_gate, view_type(m.layers[0].w_gate), "w_gate");
        check_matrix(w.layers[0].w_down, r.layers[0].w_down, view_type(m.layers[0].w_down), "w_down");
        check_vector(w.layers[0].bq, r.layers[0].bq, "bq");
    }
    // Rows of 40 are not whole 32-blocks: F16.
    model_config odd = small_config(model_family::llama);
    odd.hidden_size = 40;
    odd.num_heads = 2;
    odd.num_kv_heads = 2;
    odd.head_dim = 20;
    odd.rotary_dims = 20;
    odd.rope = rope_style::adjacent;  // already llama.cpp's rotation: stored as given
    const dense_weights ow = random_weights(odd, 5);
    const auto path = (tmp / "odd.gguf").string();
    write_gguf_checkpoint(path, odd, ow, dtype::q8_0);
    const model m = load_model(path);
    CHECK(view_type(m.layers[0].wq) == dtype::f16);
    CHECK(view_type(m.layers[0].w_down) == dtype::q8_0);  // rows of 96
    check_matrix(ow.layers[0].wq, to_dense(m.layers[0].wq), dtype::f16, "wq");
}

TEST_CASE("GGUF malformed files are input_errors naming the file")
{
    const auto good = small_gguf();
    REQUIRE_NOTHROW(parse_gguf(good.data(), good.size(), "ok"));

    SUBCASE("every truncation")
    {
        for (std::size_t n = 0; n < good.size(); ++n) {
            const std::vector<std::byte> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
            try {
                parse_gguf(cut.data(), cut.size(), "/x/cut.gguf");
                FAIL("truncated to " << n << " bytes parsed");
            } catch (const input_error& e) {
                CHECK(std::string(e.what()).rfind("/x/cut.gguf: ", 0) == 0);
            }
        }
    }
    SUBCASE("bad magic and versions")
    {
        auto b = good;
        b[0] = std::byte{'X'};
        expect_input_error(b, "not a GGUF file");
        b = good;
        poke(b, 4, std::uint32_t{1});
        expect_input_error(b, "version 1");
        poke(b, 4, std::uint32_t{0x03000000});
        expect_input_error(b, "big-endian");
    }
    SUBCASE("counts the file cannot hold")
    {
        auto b = good;
        poke(b, 8, std::uint64_t{1} << 40);
        expect_input_error(b, "tensor count");
        b = good;
        poke(b, 16, ~std::uint64_t{0});
        expect_input_error(b, "metadata count");
        b = good;
        poke(b, 8, std::uint64_t{3});  // one tensor more than described: runs into the data
        expect_input_error(b, "");
    }
    SUBCASE("string length beyond the file")
    {
        auto b = good;
        poke(b, 24, std::uint64_t{1} << 50);  // the first key's length
        expect_input_error(b, "beyond the end of the file");
        b = good;
        poke(b, find_text(b, "b.weight") - 8, std::uint64_t{b.size()});  // a tensor name's length
        expect_input_error(b, "beyond the end of the file");
    }
    SUBCASE("unknown metadata type and absurd array length")
    {
        auto b = good;
        const std::size_t key = find_text(b, "some.count");
        poke(b, key + 10, std::uint32_t{13});
        expect_input_error(b, "unknown value type 13");
        b = good;
        const std::size_t arr = find_text(b, "some.names") + 10 + 4 + 4;  // type, element type
        poke(b, arr, std::uint64_t{1} << 60);
        expect_input_error(b, "array length");
        b = good;
        poke(b, arr - 4, std::uint32_t{77});
        expect_input_error(b, "unknown array element type 77");
    }
    SUBCASE("tensor descriptions")
    {
        const auto at = tensor_info_at(good, "b.weight");
        auto b = good;
        poke(b, at.n_dims, std::uint32_t{5});
        expect_input_error(b, "5 dimensions");
        b = good;
        poke(b, at.n_dims, std::uint32_t{0});
        expect_input_error(b, "0 dimensions");
        b = good;
        poke(b, at.ne0, std::uint64_t{1} << 62);
        expect_input_error(b, "impossible dimension");
        b = good;
        poke(b, at.ne0, std::uint64_t{1} << 35);  // (2^35, 2^35) elements: overflows the element count bound
        poke(b, at.ne0 + 8, std::uint64_t{1} << 35);
        expect_input_error(b, "impossible element count");
        b = good;
        poke(b, at.type, std::uint32_t{3});  // Q4_1
        expect_input_error(b, "tensor 'b.weight' has ggml type 3 (Q4_1)");
        b = good;
        poke(b, at.type, std::uint32_t{1000});
        expect_input_error(b, "ggml type 1000");
        b = good;
        poke(b, at.type, std::uint32_t{8});  // Q8_0 needs rows of whole 32-blocks: these are
        poke(b, at.ne0, std::uint64_t{33});
        expect_input_error(b, "not a multiple of the q8_0 block size");
    }
    SUBCASE("offsets outside, overlapping or misaligned")
    {
        const auto at = tensor_info_at(good, "b.weight");
        auto b = good;
        poke(b, at.offset, std::uint64_t{1} << 20);
        expect_input_error(b, "truncated: tensor 'b.weight'");
        b = good;
        poke(b, at.offset, ~std::uint64_t{0} / 32 * 32);  // offset + size would wrap around
        expect_input_error(b, "truncated: tensor 'b.weight'");
        b = good;
        poke(b, at.offset, std::uint64_t{0});
        expect_input_error(b, "overlap");
        b = good;
        poke(b, at.offset, std::uint64_t{260});
        expect_input_error(b, "not a multiple of the alignment");
        b = good;
        b.resize(b.size() - 1);
        expect_input_error(b, "truncated");
    }
    SUBCASE("duplicates")
    {
        auto b = good;
        const auto key = find_text(b, "some.count");
        std::memcpy(b.data() + key, "some.names", 10);
        expect_input_error(b, "appears twice");
        b = good;
        std::memcpy(b.data() + find_text(b, "b.weight"), "a", 1);
        expect_input_error(b, "appears twice");
    }
}

TEST_CASE("GGUF files on disk: errors name the path; random corruption never crashes")
{
    temp_dir tmp;
    const auto good = small_gguf();
    auto b = good;
    poke(b, tensor_info_at(b, "a.weight").type, std::uint32_t{6});
    const auto path = (tmp / "bad.gguf").string();
    put_bytes(path, b);
    try {
        read_gguf(path);
        FAIL("no error");
    } catch (const input_error& e) {
        CHECK(std::string(e.what()).rfind(path + ": ", 0) == 0);
        CHECK(std::string(e.what()).find("Q5_0") != std::string::npos);
    }
    CHECK_THROWS_AS(load_model(path), input_error);

    // Model metadata that contradicts the tensors: a huge block count must not size anything.
    model_config c = small_config(model_family::llama);
    c.num_layers = 1;
    const auto model_path = (tmp / "model.gguf").string();
    write_gguf_checkpoint(model_path, c, random_weights(c, 3), dtype::f32);
    auto mb = file_bytes(model_path);
    poke(mb, find_text(mb, "llama.block_count") + 17 + 4, std::uint32_t{1} << 24);
    put_bytes(model_path, mb);
    try {
        load_model(model_path);
        FAIL("no error");
    } catch (const input_error& e) {
        CHECK(std::string(e.what()).rfind(model_path + ": block count 16777216 exceeds", 0) == 0);
    }
    mb = file_bytes(model_path);
    poke(mb, find_text(mb, "llama.block_count") + 17 + 4, std::uint32_t{2});
    put_bytes(model_path, mb);
    try {
        load_model(model_path);
        FAIL("no error");
    } catch (const input_error& e) {
        CHECK(std::string(e.what()) == model_path + ": missing tensor 'blk.1.attn_norm.weight'");
    }

    // Flipped bytes either parse (a harmless change) or raise input_error; never anything else.
    std::mt19937_64 gen(7);
    int parsed = 0;
    for (int k = 0; k < 2000; ++k) {
        auto c = good;
        const int flips = 1 + static_cast<int>(gen() % 4);
        for (int f = 0; f < flips; ++f) c[gen() % c.size()] = static_cast<std::byte>(gen() & 0xFF);
        try {
            parse_gguf(c.data(), c.size(), "fuzz");
            ++parsed;
        } catch (const input_error&) {
        }
    }
    CHECK(parsed > 0);
}
