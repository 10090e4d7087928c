#pragma once
// Karpathy's llama2.c checkpoints, in the three layouts its export.py writes:
//   v0 (legacy, run.c): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//      seq_len; a negative vocab_size means an unshared classifier), then fp32 weights each
//      stacked over layers: token embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3,
//      rms_final, freq_cis real and imag (skipped), wcls when unshared.
//   v1 ("ak42", version 1): 256-byte header (magic, version, the 7 ints, u8 shared_classifier),
//      then fp32: rms_att of every layer, rms_ffn of every layer, rms_final, token embedding,
//      wq, wk, wv, wo, w1, w2, w3 of every layer, wcls when unshared.
//   v2 ("ak42", version 2, runq.c): same header plus int32 group_size at byte 37; the norms as in
//      v1, then each matrix (token embedding, then wq of every layer, wk.., wv.., wo.., w1..,
//      w2.., w3.., wcls when unshared) as int8 values followed by one fp32 scale per group.
// The file size must match the header exactly; that is also how a v0 file, which has no magic,
// is recognized. Tensors get llama.cpp's GGUF names (token_embd.weight, blk.N.attn_q.weight, ...)
// so they read like a GGUF llama; fp32 layouts stay in the mapping, int8 ones are dequantized
// on load (w = q * scale, as runq.c does) into buffers the tensor store owns.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdlens/io/checkpoint.hpp"
#include "sdlens/io/mapped_file.hpp"

namespace sdlens {

struct llama2c_header {
    int version = 0;  // 0 legacy, 1 fp32 "ak42", 2 int8 "ak42"
    std::int64_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
    bool shared_classifier = true;
    std::int64_t group_size = 0;  // v2 only
    std::uint64_t header_bytes = 0;

    std::int64_t head_size() const { return dim / n_heads; }
    std::int64_t kv_dim() const { return n_kv_heads * head_size(); }
};

namespace detail {

constexpr std::uint32_t llama2c_magic = 0x616b3432u;  // "ak42" as a little-endian uint32

// Element counts of the matrices in file order, per layer where stacked.
struct llama2c_sizes {
    std::uint64_t emb, q, kv, o, ffn, norm_layer, final_norm, freq_half, cls;
};

inline llama2c_sizes llama2c_sizes_of(const llama2c_header& h)
{
    const auto d = static_cast<std::uint64_t>(h.dim), hs = static_cast<std::uint64_t>(h.head_size());
    return {static_cast<std::uint64_t>(h.vocab_size) * d,
            d * static_cast<std::uint64_t>(h.n_heads) * hs,
            d * static_cast<std::uint64_t>(h.kv_dim()),
            static_cast<std::uint64_t>(h.n_heads) * hs * d,
            d * static_cast<std::uint64_t>(h.hidden_dim),
            d,
            d,
            static_cast<std::uint64_t>(h.seq_len) * hs / 2,
            h.shared_classifier ? 0 : static_cast<std::uint64_t>(h.vocab_size) * d};
}

// The file size the header implies. Dimensions are bounded first, so nothing overflows.
inline std::uint64_t llama2c_expected_size(const llama2c_header& h)
{
    const auto s = llama2c_sizes_of(h);
    const auto L = static_cast<std::uint64_t>(h.n_layers);
    const std::uint64_t norms = 2 * L * s.norm_layer + s.final_norm;
    const std::uint64_t mats = s.emb + L * (s.q + 2 * s.kv + s.o + 3 * s.ffn) + s.cls;
    if (h.version == 0) return h.header_bytes + 4 * (norms + mats + 2 * s.freq_half);
    if (h.version == 1) return h.header_bytes + 4 * (norms + mats);
    const auto gs = static_cast<std::uint64_t>(h.group_size);
    return h.header_bytes + 4 * norms + mats + 4 * (mats / gs);
}

// Reads and validates the header; nullopt (when !strict) or an input_error when the bytes are not
// a consistent llama2.c checkpoint.
inline std::optional<llama2c_header> read_llama2c_header(const std::byte* data, std::size_t size,
                                                         const std::string& source, bool strict)
{
    auto reject = [&](const std::string& problem) -> std::optional<llama2c_header> {
        if (strict) fail_input(source, problem);
        return std::nullopt;
    };
    if (size < 28) return reject("too short for a llama2.c header (" + std::to_string(size) + " bytes)");
    byte_reader r(data, size, source);
    llama2c_header h;
    std::uint32_t magic;
    std::memcpy(&magic, data, 4);
    if (magic == llama2c_magic) {
        if (size < 256) return reject("truncated llama2.c header (" + std::to_string(size) + " of 256 bytes)");
        r.read<std::uint32_t>("magic");
        const auto version = r.read<std::int32_t>("version");
        if (version != 1 && version != 2)
            return reject("unsupported llama2.c export version " + std::to_string(version) + " (1 and 2 are known)");
        h.version = version;
        h.header_bytes = 256;
    }
    std::int32_t f[7];
    for (auto& v : f) v = r.read<std::int32_t>("llama2.c header");
    h.dim = f[0];
    h.hidden_dim = f[1];
    h.n_layers = f[2];
    h.n_heads = f[3];
    h.n_kv_heads = f[4];
    h.vocab_size = f[5];
    h.seq_len = f[6];
    if (h.version == 0) {
        h.header_bytes = 28;
        h.shared_classifier = h.vocab_size > 0;
        if (h.vocab_size < 0) h.vocab_size = -h.vocab_size;
    } else {
        const auto shared = r.read<std::uint8_t>("shared_classifier flag");
        if (shared > 1) return reject("llama2.c shared_classifier flag is " + std::to_string(shared));
        h.shared_classifier = shared == 1;
        if (h.version == 2) h.group_size = r.read<std::int32_t>("group size");
    }
    auto in_range = [](std::int64_t v, std::int64_t hi) { return v >= 1 && v <= hi; };
    if (!in_range(h.dim, 1 << 16) || !in_range(h.hidden_dim, 1 << 20) || !in_range(h.n_layers, 1 << 12) ||
        !in_range(h.n_heads, 1 << 12) || !in_range(h.n_kv_heads, 1 << 12) || !in_range(h.vocab_size, 1 << 24) ||
        !in_range(h.seq_len, 1 << 24))
        return reject("llama2.c header has impossible dimensions (dim " + std::to_string(f[0]) + ", hidden " +
                      std::to_string(f[1]) + ", layers " + std::to_string(f[2]) + ", heads " + std::to_string(f[3]) +
                      ", kv heads " + std::to_string(f[4]) + ", vocab " + std::to_string(f[5]) + ", seq_len " +
                      std::to_string(f[6]) + ")");
    if (h.dim % h.n_heads != 0 || h.n_heads % h.n_kv_heads != 0)
        return reject("llama2.c header: dim " + std::to_string(h.dim) + ", heads " + std::to_string(h.n_heads) +
                      " and kv heads " + std::to_string(h.n_kv_heads) + " do not divide evenly");
    if (h.version == 2) {
        if (h.group_size < 1 || h.group_size > (1 << 20)) return reject("llama2.c group size " + std::to_string(h.group_size) + " is impossible");
        const auto s = llama2c_sizes_of(h);
        for (auto n : {s.emb, s.q, s.kv, s.o, s.ffn, s.cls})
            if (n % static_cast<std::uint64_t>(h.group_size) != 0)
                return reject("llama2.c group size " + std::to_string(h.group_size) + " does not divide a tensor of " +
                              std::to_string(n) + " elements");
    }
    const auto want = llama2c_expected_size(h);
    if (want != size)
        return reject("file size " + std::to_string(size) + " does not match the llama2.c header (v" +
                      std::to_string(h.version) + ", which implies " + std::to_string(want) + " bytes)");
    return h;
}

}  // namespace detail

// True when the bytes are a llama2.c checkpoint: the "ak42" magic, or a legacy header whose
// implied size is exactly the file's.
inline bool looks_like_llama2c(const std::byte* data, std::size_t size)
{
    if (size >= 4) {
        std::uint32_t magic;
        std::memcpy(&magic, data, 4);
        if (magic == detail::llama2c_magic) return true;
    }
    return detail::read_llama2c_header(data, size, "", false).has_value();
}

inline checkpoint parse_llama2c(const std::byte* data, std::size_t size, const std::string& source,
                                std::shared_ptr<const void> owner = nullptr)
{
    const llama2c_header h = *detail::read_llama2c_header(data, size, source, true);
    checkpoint ck;
    ck.path = source;
    ck.format = checkpoint_format::llama2c;
    ck.tensors = tensor_store(source);
    if (owner) ck.tensors.keep_alive(std::move(owner));
    ck.metadata = {{"version", h.version},       {"dim", h.dim},
                   {"hidden_dim", h.hidden_dim}, {"n_layers", h.n_layers},
                   {"n_heads", h.n_heads},       {"n_kv_heads", h.n_kv_heads},
                   {"vocab_size", h.vocab_size}, {"seq_len", h.seq_len},
                   {"shared_classifier", h.shared_classifier}};
    if (h.version == 2) ck.metadata["group_size"] = h.group_size;

    const std::int64_t d = h.dim, L = h.n_layers, M = h.hidden_dim, V = h.vocab_size;
    const std::int64_t qd = h.n_heads * h.head_size(), kvd = h.kv_dim();
    auto layer_name = [](std::int64_t l, const char* what) { return "blk." + std::to_string(l) + "." + what + ".weight"; };
    const std::byte* p = data + h.header_bytes;  // sizes were checked against the file above

    // fp32 in place: a stacked tensor becomes one view per layer.
    auto take_f32 = [&](const std::string& name, std::vector<std::int64_t> shape) {
        const auto n = static_cast<std::uint64_t>(shape.size() == 1 ? shape[0] : shape[0] * shape[1]);
        ck.tensors.add({name, dtype::f32, std::move(shape), p, 4 * n});
        p += 4 * n;
    };
    auto stacked_f32 = [&](const char* what, std::vector<std::int64_t> shape) {
        for (std::int64_t l = 0; l < L; ++l) take_f32(layer_name(l, what), shape);
    };
    // int8 groups then fp32 scales, dequantized.
    auto take_q8 = [&](const std::string& name, std::vector<std::int64_t> shape) {
        const std::int64_t n = shape[0] * shape[1], gs = h.group_size;
        const auto* q = reinterpret_cast<const std::int8_t*>(p);
        const std::byte* s = p + n;
        std::vector<std::byte> out(static_cast<std::size_t>(4 * n));
        for (std::int64_t g = 0; g < n / gs; ++g) {
            float scale;
            std::memcpy(&scale, s + 4 * g, 4);
            for (std::int64_t i = g * gs; i < (g + 1) * gs; ++i) {
                const float w = static_cast<float>(q[i]) * scale;
                std::memcpy(out.data() + 4 * i, &w, 4);
            }
        }
        ck.tensors.add_owned(name, dtype::f32, std::move(shape), std::move(out));
        p += n + 4 * (n / gs);
    };
    auto take_matrix = [&](const std::string& name, std::vector<std::int64_t> shape) {
        if (h.version == 2) take_q8(name, std::move(shape));
        else take_f32(name, std::move(shape));
    };
    auto stacked_matrix = [&](const char* what, std::vector<std::int64_t> shape) {
        for (std::int64_t l = 0; l < L; ++l) take_matrix(layer_name(l, what), shape);
    };

    if (h.version == 0) {
        take_f32("token_embd.weight", {V, d});
        stacked_f32("attn_norm", {d});
        stacked_f32("attn_q", {qd, d});
        stacked_f32("attn_k", {kvd, d});
        stacked_f32("attn_v", {kvd, d});
        stacked_f32("attn_output", {d, qd});
        stacked_f32("ffn_norm", {d});
        stacked_f32("ffn_gate", {M, d});
        stacked_f32("ffn_down", {d, M});
        stacked_f32("ffn_up", {M, d});
        take_f32("output_norm.weight", {d});
        p += 2 * 4 * detail::llama2c_sizes_of(h).freq_half;  // RoPE tables, recomputed downstream
        if (!h.shared_classifier) take_f32("output.weight", {V, d});
    } else {
        stacked_f32("attn_norm", {d});
        stacked_f32("ffn_norm", {d});
        take_f32("output_norm.weight", {d});
        take_matrix("token_embd.weight", {V, d});
        stacked_matrix("attn_q", {qd, d});
        stacked_matrix("attn_k", {kvd, d});
        stacked_matrix("attn_v", {kvd, d});
        stacked_matrix("attn_output", {d, qd});
        stacked_matrix("ffn_gate", {M, d});
        stacked_matrix("ffn_down", {d, M});
        stacked_matrix("ffn_up", {M, d});
        if (!h.shared_classifier) take_matrix("output.weight", {V, d});
    }
    return ck;
}

inline checkpoint read_llama2c(const std::string& path)
{
    auto file = std::make_shared<const mapped_file>(path);
    return parse_llama2c(file->data(), file->size(), path, file);
}

}  // namespace sdlens
