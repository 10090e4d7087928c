// llama2.c checkpoints: hand-assembled files of each export version map every tensor to its
// GGUF-style name; stories260K.bin, stories260K_q80.bin and stories260K.gguf describe the same
// model with the same weights; malformed headers and sizes are input_errors naming the file.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <sdlens/io/gguf.hpp>
#include <sdlens/io/llama2c.hpp>
#include <sdlens/model/gguf_families.hpp>
#include <sdlens/model/load.hpp>

#include "support.hpp"

using namespace sdlens;
using sdlens::test::temp_dir;

namespace {

// dim 8, hidden 12, 2 layers, 2 heads (size 4), 1 kv head, vocab 10, seq_len 4.
constexpr std::int32_t D = 8, H = 12, L = 2, NH = 2, NKV = 1, V = 10, S = 4, HS = D / NH, KV = NKV * HS;

// Segment k of the file holds values k * 10000 + i, so a tensor read back tells where it came from.
struct segment {
    const char* what;
    std::int64_t n;
};

void append(std::vector<std::byte>& out, const void* p, std::size_t n)
{
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
}
template <class T>
void append(std::vector<std::byte>& out, T v)
{
    append(out, &v, sizeof v);
}

float marker(int seg, std::int64_t i) { return static_cast<float>(seg * 10000 + i); }

void append_f32_segment(std::vector<std::byte>& out, int seg, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i) append(out, marker(seg, i));
}

const std::vector<segment> v0_segments(bool shared)
{
    std::vector<segment> s = {{"emb", V * D},     {"rms_att", L * D}, {"wq", L * D * D},  {"wk", L * KV * D},
                              {"wv", L * KV * D}, {"wo", L * D * D},  {"rms_ffn", L * D}, {"w1", L * H * D},
                              {"w2", L * D * H},  {"w3", L * H * D},  {"rms_final", D},   {"freq_real", S * HS / 2},
                              {"freq_imag", S * HS / 2}};
    if (!shared) s.push_back({"wcls", V * D});
    return s;
}

std::vector<std::byte> v0_file(bool shared)
{
    std::vector<std::byte> b;
    for (std::int32_t v : {D, H, L, NH, NKV, shared ? V : -V, S}) append(b, v);
    const auto segs = v0_segments(shared);
    for (std::size_t k = 0; k < segs.size(); ++k) append_f32_segment(b, static_cast<int>(k), segs[k].n);
    return b;
}

std::vector<std::byte> ak42_header(int version, bool shared, std::int32_t group_size)
{
    std::vector<std::byte> b;
    append(b, std::uint32_t{0x616b3432});
    append(b, std::int32_t{version});
    for (std::int32_t v : {D, H, L, NH, NKV, V, S}) append(b, v);
    append(b, std::uint8_t{shared ? std::uint8_t{1} : std::uint8_t{0}});
    if (version == 2) append(b, group_size);
    b.resize(256);
    return b;
}

// v1/v2: norms first, then matrices, each stacked over layers.
const std::vector<segment> ak42_norms = {{"rms_att", L * D}, {"rms_ffn", L * D}, {"rms_final", D}};
const std::vector<segment> ak42_matrices(bool shared)
{
    std::vector<segment> s = {{"emb", V * D}, {"wq", L * D * D}, {"wk", L * KV * D}, {"wv", L * KV * D},
                              {"wo", L * D * D}, {"w1", L * H * D}, {"w2", L * D * H}, {"w3", L * H * D}};
    if (!shared) s.push_back({"wcls", V * D});
    return s;
}

std::vector<std::byte> v1_file(bool shared)
{
    auto b = ak42_header(1, shared, 0);
    int k = 0;
    for (const auto& s : ak42_norms) append_f32_segment(b, k++, s.n);
    for (const auto& s : ak42_matrices(shared)) append_f32_segment(b, k++, s.n);
    return b;
}

// v2 int8 values: q = ((seg * 7 + i) % 255) - 127, scale of group g = (seg + 1) * 0.5 + g * 0.25.
std::int8_t q_value(int seg, std::int64_t i) { return static_cast<std::int8_t>((seg * 7 + i) % 255 - 127); }
float q_scale(int seg, std::int64_t g) { return static_cast<float>((seg + 1) * 0.5 + static_cast<double>(g) * 0.25); }

constexpr std::int32_t GS = 4;

std::vector<std::byte> v2_file(bool shared)
{
    auto b = ak42_header(2, shared, GS);
    int k = 0;
    for (const auto& s : ak42_norms) append_f32_segment(b, k++, s.n);
    for (const auto& s : ak42_matrices(shared)) {
        // Each layer's matrix is its own quantized tensor: its int8 values, then its scales.
        const std::int64_t per = s.n / (std::string(s.what) == "emb" || std::string(s.what) == "wcls" ? 1 : L);
        for (std::int64_t l = 0; l < s.n / per; ++l) {
            for (std::int64_t i = 0; i < per; ++i) append(b, q_value(k, l * per + i));
            for (std::int64_t g = 0; g < per / GS; ++g) append(b, q_scale(k, l * (per / GS) + g));
        }
        ++k;
    }
    return b;
}

int segment_index(const std::vector<segment>& segs, const std::string& what)
{
    for (std::size_t k = 0; k < segs.size(); ++k)
        if (what == segs[k].what) return static_cast<int>(k);
    FAIL("no segment " << what);
    return -1;
}

float at(const tensor_info& t, std::int64_t i)
{
    float f;
    std::memcpy(&f, t.data + 4 * i, 4);
    return f;
}

// Every element of the tensor equals want(flat index within the stacked file segment).
template <class F>
bool tensor_matches(const tensor_info& t, std::int64_t layer_offset, F want)
{
    for (std::int64_t i = 0; i < t.numel(); ++i)
        if (at(t, i) != want(layer_offset + i)) return false;
    return true;
}

void put_bytes(const std::filesystem::path& p, const std::vector<std::byte>& b)
{
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

template <class T>
void poke(std::vector<std::byte>& b, std::size_t at, T v)
{
    std::memcpy(b.data() + at, &v, sizeof(T));
}

void expect_error(const temp_dir& tmp, const std::vector<std::byte>& b, const std::string& what)
{
    const auto path = (tmp / "bad.bin").string();
    put_bytes(path, b);
    try {
        read_llama2c(path);
        FAIL("no error; expected " << what);
    } catch (const input_error& e) {
        const std::string msg = e.what();
        CHECK_MESSAGE(msg.rfind(path + ": ", 0) == 0, msg);
        CHECK_MESSAGE(msg.find(what) != std::string::npos, msg);
    }
}

// Expected tensor: name, segment, shape, offset of layer l within the segment.
struct expected {
    std::string name;
    const char* seg;
    std::int64_t rows, cols;
};
std::vector<expected> expected_tensors(bool shared)
{
    std::vector<expected> e = {{"token_embd.weight", "emb", V, D}, {"output_norm.weight", "rms_final", 1, D}};
    if (!shared) e.push_back({"output.weight", "wcls", V, D});
    for (int l = 0; l < L; ++l) {
        auto n = [&](const char* w) { return "blk." + std::to_string(l) + "." + w + ".weight"; };
        e.push_back({n("attn_norm"), "rms_att", 1, D});
        e.push_back({n("attn_q"), "wq", D, D});
        e.push_back({n("attn_k"), "wk", KV, D});
        e.push_back({n("attn_v"), "wv", KV, D});
        e.push_back({n("attn_output"), "wo", D, D});
        e.push_back({n("ffn_norm"), "rms_ffn", 1, D});
        e.push_back({n("ffn_gate"), "w1", H, D});
        e.push_back({n("ffn_down"), "w2", D, H});
        e.push_back({n("ffn_up"), "w3", H, D});
    }
    return e;
}

std::int64_t layer_of(const std::string& name) { return name.rfind("blk.", 0) == 0 ? std::stoll(name.substr(4)) : 0; }

}  // namespace

TEST_CASE("llama2.c legacy (v0) and fp32 (v1) files: every tensor comes from its place in the file")
{
    temp_dir tmp;
    for (int version : {0, 1})
        for (bool shared : {true, false}) {
            INFO("v" << version << std::string(shared ? " shared" : " unshared"));
            const auto path = (tmp / "m.bin").string();
            put_bytes(path, version == 0 ? v0_file(shared) : v1_file(shared));
            const auto ck = read_llama2c(path);
            CHECK(ck.format == checkpoint_format::llama2c);
            CHECK(ck.metadata["version"] == version);
            CHECK(ck.metadata["vocab_size"] == V);
            CHECK(ck.metadata["shared_classifier"] == shared);
            std::vector<segment> segs = version == 0 ? v0_segments(shared) : ak42_norms;
            if (version == 1)
                for (const auto& s : ak42_matrices(shared)) segs.push_back(s);
            const auto want = expected_tensors(shared);
            CHECK(ck.tensors.tensors().size() == want.size());
            for (const auto& e : want) {
                INFO(e.name);
                const auto& t = ck.tensors.at(e.name);
                CHECK(t.type == dtype::f32);
                CHECK(t.numel() == e.rows * e.cols);
                const int seg = segment_index(segs, e.seg);
                CHECK(tensor_matches(t, layer_of(e.name) * t.numel(), [&](std::int64_t i) { return marker(seg, i); }));
            }
            const model m = load_model(path);  // recognized by content
            CHECK(m.config.tied_embeddings == shared);
            CHECK(m.config.num_kv_heads == NKV);
            CHECK(m.config.head_dim == HS);
            CHECK(m.config.max_positions == S);
            CHECK(m.config.rope == rope_style::adjacent);
            if (shared) CHECK(m.lm_head.tensor == m.token_embedding.tensor);
            else CHECK(m.lm_head.tensor->name == "output.weight");
        }
}

TEST_CASE("llama2.c int8 (v2) files dequantize each group as q * scale")
{
    temp_dir tmp;
    for (bool shared : {true, false}) {
        INFO(std::string(shared ? "shared" : "unshared"));
        const auto path = (tmp / "q.bin").string();
        put_bytes(path, v2_file(shared));
        const auto ck = read_llama2c(path);
        CHECK(ck.metadata["group_size"] == GS);
        std::vector<segment> segs = ak42_norms;
        for (const auto& s : ak42_matrices(shared)) segs.push_back(s);
        for (const auto& e : expected_tensors(shared)) {
            INFO(e.name);
            const auto& t = ck.tensors.at(e.name);
            const int seg = segment_index(segs, e.seg);
            const std::int64_t off = layer_of(e.name) * t.numel();
            if (e.rows == 1) CHECK(tensor_matches(t, off, [&](std::int64_t i) { return marker(seg, i); }));
            else CHECK(tensor_matches(t, off, [&](std::int64_t i) { return static_cast<float>(q_value(seg, i)) * q_scale(seg, i / GS); }));
        }
        CHECK_NOTHROW(load_model(path));
    }
}

TEST_CASE("stories260K: .bin, _q80.bin and .gguf are the same model")
{
    auto dir = sdlens::test::stories260k();
    if (!dir) return;
    const model bin = load_model((*dir / "stories260K.bin").string());
    const model q80 = load_model((*dir / "stories260K_q80.bin").string());
    const model gg = load_model((*dir / "stories260K.gguf").string());
    CHECK(bin.source->format == checkpoint_format::llama2c);
    CHECK(q80.source->metadata["version"] == 2);
    CHECK(gg.source->format == checkpoint_format::gguf);
    for (const model* m : {&bin, &q80, &gg}) {
        const auto& c = m->config;
        CHECK(c.hidden_size == 64);
        CHECK(c.num_layers == 5);
        CHECK(c.num_heads == 8);
        CHECK(c.num_kv_heads == 4);
        CHECK(c.ffn_size == 172);
        CHECK(c.vocab_size == 512);
        CHECK(c.rope == rope_style::adjacent);
        CHECK(c.bos_token == 1);
        CHECK(c.eos_token == 2);
    }
    // The GGUF holds f32, converted from the same weights without permutation: bit-exact,
    // its separate output.weight included (llama2.c shares it with the embedding).
    REQUIRE(gg.layers[0].wq.tensor->type == dtype::f32);
    const dense_weights a = materialize(bin), g = materialize(gg);
    CHECK(a.token_embedding == g.token_embedding);
    CHECK(to_dense(bin.lm_head) == to_dense(gg.lm_head));
    CHECK(a.final_norm == g.final_norm);
    for (std::size_t l = 0; l < a.layers.size(); ++l) {
        const auto &x = a.layers[l], &y = g.layers[l];
        CHECK(x.wq == y.wq);
        CHECK(x.wk == y.wk);
        CHECK(x.wv == y.wv);
        CHECK(x.wo == y.wo);
        CHECK(x.w_gate == y.w_gate);
        CHECK(x.w_up == y.w_up);
        CHECK(x.w_down == y.w_down);
        CHECK(x.attn_norm == y.attn_norm);
        CHECK(x.ffn_norm == y.ffn_norm);
    }
    // The int8 export rounds each group of 32 consecutive values (of each layer's flattened
    // matrix) to multiples of max|w|/127: off by at most half of that; norms stay fp32.
    const int gs = q80.source->metadata["group_size"].get<int>();
    CHECK(gs == 32);
    const dense_weights q = materialize(q80);
    auto within = [&](const row_matrix<float>& w, const row_matrix<float>& v) {
        REQUIRE(w.size() == v.size());
        for (Eigen::Index g0 = 0; g0 < w.size(); g0 += gs) {
            float amax = 0;
            for (int j = 0; j < gs; ++j) amax = std::max(amax, std::fabs(w.data()[g0 + j]));
            const float bound = amax / 127.0f / 2.0f * (1 + 1e-5f);  // plus float rounding of q*s
            for (int j = 0; j < gs; ++j)
                if (std::fabs(w.data()[g0 + j] - v.data()[g0 + j]) > bound) return false;
        }
        return true;
    };
    CHECK(within(a.token_embedding, q.token_embedding));
    CHECK(a.final_norm == q.final_norm);
    for (std::size_t l = 0; l < a.layers.size(); ++l) {
        const auto &x = a.layers[l], &y = q.layers[l];
        CHECK(within(x.wq, y.wq));
        CHECK(within(x.wk, y.wk));
        CHECK(within(x.wv, y.wv));
        CHECK(within(x.wo, y.wo));
        CHECK(within(x.w_gate, y.w_gate));
        CHECK(within(x.w_up, y.w_up));
        CHECK(within(x.w_down, y.w_down));
        CHECK(x.attn_norm == y.attn_norm);
        CHECK(x.ffn_norm == y.ffn_norm);
        CHECK(x.wq != y.wq);  // really quantized
    }
}

TEST_CASE("llama2.c malformed headers and sizes are input_errors naming the file")
{
    temp_dir tmp;
    const auto good = v0_file(true);
    REQUIRE_NOTHROW(parse_llama2c(good.data(), good.size(), "ok"));
    auto b = good;
    poke(b, 0, std::int32_t{-8});
    expect_error(tmp, b, "impossible dimensions");
    b = good;
    poke(b, 8, std::int32_t{1000000000});
    expect_error(tmp, b, "impossible dimensions");
    b = good;
    poke(b, 4 * 6, std::int32_t{0});  // seq_len
    expect_error(tmp, b, "impossible dimensions");
    b = good;
    poke(b, 4 * 3, std::int32_t{3});  // 8 is not a multiple of 3 heads
    expect_error(tmp, b, "do not divide");
    b = good;
    poke(b, 4 * 5, std::int32_t{-V});  // says unshared: a classifier is missing
    expect_error(tmp, b, "does not match the llama2.c header");
    b = good;
    b.push_back(std::byte{0});
    expect_error(tmp, b, "does not match the llama2.c header");
    b = good;
    b.resize(b.size() - 4);
    expect_error(tmp, b, "does not match the llama2.c header");
    expect_error(tmp, std::vector<std::byte>(good.begin(), good.begin() + 20), "too short");

    const auto good2 = v2_file(true);
    REQUIRE_NOTHROW(parse_llama2c(good2.data(), good2.size(), "ok"));
    b = good2;
    poke(b, 4, std::int32_t{3});
    expect_error(tmp, b, "export version 3");
    b = good2;
    poke(b, 37, std::int32_t{0});
    expect_error(tmp, b, "group size 0");
    b = good2;
    poke(b, 37, std::int32_t{5});
    expect_error(tmp, b, "does not divide");
    b = good2;
    poke(b, 36, std::uint8_t{7});
    expect_error(tmp, b, "shared_classifier");
    b = good2;
    b.resize(b.size() - 1);
    expect_error(tmp, b, "does not match");
    expect_error(tmp, std::vector<std::byte>(good2.begin(), good2.begin() + 100), "truncated llama2.c header");

    // Not llama2.c at all: no magic and a header that does not imply the size.
    std::vector<std::byte> junk(1000, std::byte{0x41});
    CHECK(!looks_like_llama2c(junk.data(), junk.size()));
    CHECK(looks_like_llama2c(good.data(), good.size()));
    CHECK(looks_like_llama2c(good2.data(), good2.size()));
}
