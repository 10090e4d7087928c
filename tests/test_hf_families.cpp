// Hugging Face families: real config.json files read into the right model_config, models written
// and read back bit-exactly in every dtype, stored layouts checked element by element against
// each family's documented layout, and bad configs or tensors reported with the file's name.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sdlens/model/dense_weights.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>

#include "support.hpp"

using namespace sdlens;
using sdlens::test::expect_input_error;
using sdlens::test::temp_dir;
using nlohmann::json;

namespace {

struct variant {
    const char* label;
    model_config config;
};

std::vector<variant> all_variants()
{
    return {
        {"llama", small_config(model_family::llama)},
        {"mistral", small_config(model_family::mistral)},
        {"qwen2", small_config(model_family::qwen2)},
        {"phi3", small_config(model_family::phi3)},
        {"gpt2", small_config(model_family::gpt2)},
        {"neox", small_config(model_family::neox)},
        {"falcon new decoder", small_config(model_family::falcon, falcon_variant::new_decoder)},
        {"falcon multi-query", small_config(model_family::falcon, falcon_variant::multi_query)},
        {"gemma", small_config(model_family::gemma)},
        {"gemma2", small_config(model_family::gemma2)},
        {"gemma3", small_config(model_family::gemma3)},
        {"mpt", small_config(model_family::mpt)},
        {"bert", small_config(model_family::bert)},
        {"roberta", small_config(model_family::roberta)},
        {"distilbert", small_config(model_family::distilbert)},
    };
}

float round_to(float x, dtype t)
{
    switch (t) {
    case dtype::f16: return f16_to_float(float_to_f16(x));
    case dtype::bf16: return bf16_to_float(float_to_bf16(x));
    default: return x;
    }
}

template <class M>
M rounded(const M& m, dtype t)
{
    return m.unaryExpr([t](float x) { return round_to(x, t); });
}

template <class M>
void check_same(const M& got, const M& want, const char* what)
{
    CAPTURE(what);
    REQUIRE(got.rows() == want.rows());
    REQUIRE(got.cols() == want.cols());
    CHECK((got.array() == want.array()).all());  // exact: storage rounds once, reading is exact
}

// Every piece, member by member, against the dense weights rounded to the stored dtype.
void check_round_trip(const dense_weights& got, const dense_weights& w, dtype t)
{
#define SDLENS_SAME(field) check_same(got.field, rounded(w.field, t), #field)
    SDLENS_SAME(token_embedding);
    SDLENS_SAME(position_embedding);
    SDLENS_SAME(token_type_embedding);
    SDLENS_SAME(embedding_norm);
    SDLENS_SAME(embedding_norm_bias);
    SDLENS_SAME(final_norm);
    SDLENS_SAME(final_norm_bias);
    SDLENS_SAME(lm_head);
    REQUIRE(got.layers.size() == w.layers.size());
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
        CAPTURE(l);
        SDLENS_SAME(layers[l].wq);
        SDLENS_SAME(layers[l].wk);
        SDLENS_SAME(layers[l].wv);
        SDLENS_SAME(layers[l].wo);
        SDLENS_SAME(layers[l].bq);
        SDLENS_SAME(layers[l].bk);
        SDLENS_SAME(layers[l].bv);
        SDLENS_SAME(layers[l].bo);
        SDLENS_SAME(layers[l].attn_norm);
        SDLENS_SAME(layers[l].attn_norm_bias);
        SDLENS_SAME(layers[l].ffn_norm);
        SDLENS_SAME(layers[l].ffn_norm_bias);
        SDLENS_SAME(layers[l].w_gate);
        SDLENS_SAME(layers[l].w_up);
        SDLENS_SAME(layers[l].w_down);
        SDLENS_SAME(layers[l].b_gate);
        SDLENS_SAME(layers[l].b_up);
        SDLENS_SAME(layers[l].b_down);
        SDLENS_SAME(layers[l].post_attn_norm);
        SDLENS_SAME(layers[l].post_ffn_norm);
        SDLENS_SAME(layers[l].q_norm);
        SDLENS_SAME(layers[l].k_norm);
    }
#undef SDLENS_SAME
}

void write_text(const std::filesystem::path& p, const std::string& text)
{
    std::ofstream out(p, std::ios::trunc);
    out << text;
}

json read_json(const std::filesystem::path& p)
{
    std::ifstream in(p);
    return json::parse(in);
}

// The raw stored tensor, decoded, as the file holds it.
row_matrix<float> stored(const checkpoint& c, const std::string& name) { return to_dense(whole(c.tensors.at(name))); }


}  // namespace

TEST_CASE("every family writes and reads back bit-exactly in f32, f16 and bf16")
{
    for (const auto& v : all_variants()) {
        for (dtype t : {dtype::f32, dtype::f16, dtype::bf16}) {
            const std::string label = v.label;
            CAPTURE(label);
            CAPTURE(dtype_name(t));
            temp_dir dir;
            const auto w = random_weights(v.config, 7);
            write_hf_checkpoint(dir.path().string(), v.config, w, t);
            const auto m = load_model(dir.path().string());
            auto want = v.config;
            want.weight_dtype = t;
            CHECK(to_json(m.config) == to_json(want));
            check_round_trip(materialize(m), w, t);
            // A tied head is the embedding itself, not a copy.
            if (v.config.tied_embeddings) CHECK(m.lm_head.tensor == m.token_embedding.tensor);
            // Every stored tensor has the dtype asked for, norms and biases included.
            for (const auto& ti : m.source->tensors.tensors()) CHECK(ti.type == t);
        }
    }
}

TEST_CASE("random models have every tensor their config implies and are deterministic")
{
    for (const auto& v : all_variants()) {
        const std::string label = v.label;
        CAPTURE(label);
        const auto& c = v.config;
        const auto w = random_weights(c, 1);
        const auto& l = w.layers.at(1);
        CHECK(static_cast<std::int64_t>(w.layers.size()) == c.num_layers);
        CHECK(w.token_embedding.rows() == c.vocab_size);
        CHECK(w.position_embedding.rows() == (c.learned_positions ? c.max_positions : 0));
        CHECK(w.lm_head.rows() == (c.tied_embeddings || is_encoder(c.family) ? 0 : c.vocab_size));
        CHECK(l.wk.rows() == c.kv_dim());
        CHECK(l.wo.cols() == c.q_dim());
        CHECK(l.bq.size() == (c.bias.qkv ? c.q_dim() : 0));
        CHECK(l.bo.size() == (c.bias.o ? c.hidden_size : 0));
        CHECK(l.w_gate.rows() == (is_gated(c.activation) ? c.ffn_size : 0));
        CHECK(l.post_ffn_norm.size() == (c.sandwich_norms ? c.hidden_size : 0));
        CHECK(l.q_norm.size() == (c.qk_norm ? c.head_dim : 0));
        CHECK(l.ffn_norm.size() == (c.shared_input_norm ? 0 : c.hidden_size));
        CHECK(l.attn_norm_bias.size() == (c.bias.norm ? c.hidden_size : 0));
        CHECK(l.b_down.size() == (c.bias.ffn ? c.hidden_size : 0));
        CHECK((random_weights(c, 1).layers[0].wq.array() == w.layers[0].wq.array()).all());
        CHECK(!(random_weights(c, 2).layers[0].wq.array() == w.layers[0].wq.array()).all());
        // Matrices N(0, 1/in): the mean square of wq's 64 * 64 entries is 1/64 within a few
        // standard errors (sd of a mean of 4096 chi-square(1)/64 values is sqrt(2/4096)/64).
        const double ms = w.layers[0].wq.cast<double>().array().square().mean();
        CHECK(ms == doctest::Approx(1.0 / 64).epsilon(0.15));
        // Gains 1 + N(0, 0.1^2): stored as they are, or as w with gain 1 + w (Gemma).
        CHECK(std::abs(l.attn_norm.mean() + c.norm_weight_offset - 1.0) < 0.05);
    }
}

TEST_CASE("stored layouts follow each family's documented layout")
{
    temp_dir root;
    const auto write = [&](const model_config& c, const std::string& name) {
        const auto dir = root / name;
        const auto w = random_weights(c, 3);
        write_hf_checkpoint(dir.string(), c, w, dtype::f32);
        return std::make_pair(read_safetensors(dir.string()), w);
    };
    const std::int64_t d = 64, hd = 16;

    SUBCASE("llama: separate projections, an lm_head, nothing else")
    {
        const auto [ck, w] = write(small_config(model_family::llama), "llama");
        CHECK(ck.tensors.tensors().size() == 1 + 2 * 9 + 1 + 1);
        CHECK((stored(ck, "model.layers.1.self_attn.k_proj.weight").array() == w.layers[1].wk.array()).all());
        CHECK((stored(ck, "model.layers.0.mlp.gate_proj.weight").array() == w.layers[0].w_gate.array()).all());
        CHECK((stored(ck, "lm_head.weight").array() == w.lm_head.array()).all());
        CHECK(ck.metadata["model_type"] == "llama");
        CHECK(ck.metadata["num_key_value_heads"] == 2);
    }
    SUBCASE("qwen2: q/k/v biases, tied head")
    {
        const auto [ck, w] = write(small_config(model_family::qwen2), "qwen2");
        CHECK(ck.tensors.find("lm_head.weight") == nullptr);
        CHECK(ck.tensors.find("model.layers.0.self_attn.o_proj.bias") == nullptr);
        CHECK((to_dense(whole_vector(ck.tensors.at("model.layers.1.self_attn.v_proj.bias"))).array() == w.layers[1].bv.array()).all());
    }
    SUBCASE("phi3: qkv_proj rows [q; k; v], gate_up_proj rows [gate; up]")
    {
        const auto [ck, w] = write(small_config(model_family::phi3), "phi3");
        const auto qkv = stored(ck, "model.layers.1.self_attn.qkv_proj.weight");
        REQUIRE(qkv.rows() == 64 + 32 + 32);
        CHECK((qkv.middleRows(0, 64).array() == w.layers[1].wq.array()).all());
        CHECK((qkv.middleRows(96, 32).array() == w.layers[1].wv.array()).all());
        const auto gu = stored(ck, "model.layers.0.mlp.gate_up_proj.weight");
        CHECK((gu.topRows(96).array() == w.layers[0].w_gate.array()).all());
        CHECK((gu.bottomRows(96).array() == w.layers[0].w_up.array()).all());
        CHECK(ck.metadata["partial_rotary_factor"] == 0.75);
    }
    SUBCASE("gpt2: Conv1D weights stored (in, out), c_attn columns [q | k | v]")
    {
        const auto [ck, w] = write(small_config(model_family::gpt2), "gpt2");
        const auto c_attn = stored(ck, "transformer.h.1.attn.c_attn.weight");
        REQUIRE(c_attn.rows() == d);
        REQUIRE(c_attn.cols() == 3 * d);
        for (std::int64_t i = 0; i < d; ++i)
            for (std::int64_t j = 0; j < d; ++j) {
                CHECK(c_attn(i, j) == w.layers[1].wq(j, i));
                CHECK(c_attn(i, 2 * d + j) == w.layers[1].wv(j, i));
            }
        const auto bias = to_dense(whole_vector(ck.tensors.at("transformer.h.1.attn.c_attn.bias")));
        CHECK((bias.segment(d, d).array() == w.layers[1].bk.array()).all());
        const auto fc = stored(ck, "transformer.h.0.mlp.c_fc.weight");
        CHECK((fc.transpose().array() == w.layers[0].w_up.array()).all());
        CHECK(ck.tensors.find("transformer.wpe.weight") != nullptr);
        CHECK(ck.tensors.find("lm_head.weight") == nullptr);
        CHECK(ck.metadata["n_embd"] == 64);
        CHECK(ck.metadata["n_inner"] == 96);
    }
    SUBCASE("neox: query_key_value rows per head (h, 3, hd)")
    {
        const auto [ck, w] = write(small_config(model_family::neox), "neox");
        const auto qkv = stored(ck, "gpt_neox.layers.1.attention.query_key_value.weight");
        const auto b = to_dense(whole_vector(ck.tensors.at("gpt_neox.layers.1.attention.query_key_value.bias")));
        for (std::int64_t h = 0; h < 4; ++h)
            for (std::int64_t r = 0; r < hd; ++r) {
                CHECK((qkv.row((h * 3 + 0) * hd + r).array() == w.layers[1].wq.row(h * hd + r).array()).all());
                CHECK((qkv.row((h * 3 + 1) * hd + r).array() == w.layers[1].wk.row(h * hd + r).array()).all());
                CHECK((qkv.row((h * 3 + 2) * hd + r).array() == w.layers[1].wv.row(h * hd + r).array()).all());
                CHECK(b[(h * 3 + 2) * hd + r] == w.layers[1].bv[h * hd + r]);
            }
        CHECK((stored(ck, "embed_out.weight").array() == w.lm_head.array()).all());
        CHECK(ck.metadata["rotary_pct"] == 0.25);
        CHECK(ck.metadata["model_type"] == "gpt_neox");
    }
    SUBCASE("falcon new decoder: query_key_value per group (kv, n_rep + 2, hd), ln_attn and ln_mlp")
    {
        const auto [ck, w] = write(small_config(model_family::falcon, falcon_variant::new_decoder), "falcon40");
        const auto qkv = stored(ck, "transformer.h.0.self_attention.query_key_value.weight");
        const std::int64_t rep = 2;
        REQUIRE(qkv.rows() == 2 * (rep + 2) * hd);
        for (std::int64_t head = 0; head < 4; ++head) {
            const std::int64_t g = head / rep, i = head % rep;
            for (std::int64_t r = 0; r < hd; ++r)
                CHECK((qkv.row((g * (rep + 2) + i) * hd + r).array() == w.layers[0].wq.row(head * hd + r).array()).all());
        }
        for (std::int64_t g = 0; g < 2; ++g)
            for (std::int64_t r = 0; r < hd; ++r) {
                CHECK((qkv.row((g * (rep + 2) + rep) * hd + r).array() == w.layers[0].wk.row(g * hd + r).array()).all());
                CHECK((qkv.row((g * (rep + 2) + rep + 1) * hd + r).array() == w.layers[0].wv.row(g * hd + r).array()).all());
            }
        CHECK(ck.tensors.find("transformer.h.1.ln_mlp.bias") != nullptr);
        CHECK(ck.tensors.find("transformer.h.1.input_layernorm.weight") == nullptr);
        CHECK(ck.metadata["new_decoder_architecture"] == true);
        CHECK(ck.metadata["num_kv_heads"] == 2);
    }
    SUBCASE("falcon multi-query: query_key_value rows [q; k; v], one shared input_layernorm")
    {
        const auto [ck, w] = write(small_config(model_family::falcon, falcon_variant::multi_query), "falcon7");
        const auto qkv = stored(ck, "transformer.h.1.self_attention.query_key_value.weight");
        REQUIRE(qkv.rows() == d + 2 * hd);
        CHECK((qkv.topRows(d).array() == w.layers[1].wq.array()).all());
        CHECK((qkv.middleRows(d, hd).array() == w.layers[1].wk.array()).all());
        CHECK((qkv.bottomRows(hd).array() == w.layers[1].wv.array()).all());
        CHECK(ck.tensors.find("transformer.h.1.input_layernorm.bias") != nullptr);
        CHECK(ck.tensors.find("transformer.h.1.post_attention_layernorm.weight") == nullptr);
        CHECK(ck.metadata["multi_query"] == true);
        CHECK(ck.metadata["parallel_attn"] == true);
    }
}

TEST_CASE("real config.json files give the documented architecture")
{
    const auto cfg = [](const char* text) { return hf_model_config(json::parse(text), "config.json"); };
    SUBCASE("TinyLlama: GQA 32/4")
    {
        const auto c = cfg(R"({"architectures":["LlamaForCausalLM"],"bos_token_id":1,"eos_token_id":2,"hidden_act":"silu","hidden_size":2048,
            "intermediate_size":5632,"max_position_embeddings":2048,"model_type":"llama","num_attention_heads":32,"num_hidden_layers":22,
            "num_key_value_heads":4,"pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":null,"tie_word_embeddings":false,"vocab_size":32000})");
        CHECK(c.family == model_family::llama);
        CHECK(c.num_kv_heads == 4);
        CHECK(c.head_dim == 64);
        CHECK(c.rotary_dims == 64);
        CHECK(c.rope == rope_style::half);
        CHECK(c.rope_theta == 10000.0);
        CHECK(c.norm_eps == 1e-5);
        CHECK(c.bos_token == 1);
        CHECK(c.eos_token == 2);
        CHECK(!c.bias.qkv);
    }
    SUBCASE("Llama 3 instruct: a list of eos ids, rope_theta 500000")
    {
        const auto c = cfg(R"({"architectures":["LlamaForCausalLM"],"attention_bias":false,"bos_token_id":128000,"eos_token_id":[128001,128009],
            "hidden_act":"silu","hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":8192,"model_type":"llama",
            "num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_scaling":null,
            "rope_theta":500000.0,"tie_word_embeddings":false,"vocab_size":128256})");
        CHECK(c.eos_token == 128001);
        CHECK(c.rope_theta == 500000.0);
        CHECK(c.kv_dim() == 1024);
    }
    SUBCASE("Qwen2-0.5B: q/k/v biases, tied, 14 heads of 64")
    {
        const auto c = cfg(R"({"architectures":["Qwen2ForCausalLM"],"bos_token_id":151643,"eos_token_id":151643,"hidden_act":"silu",
            "hidden_size":896,"intermediate_size":4864,"max_position_embeddings":131072,"max_window_layers":24,"model_type":"qwen2",
            "num_attention_heads":14,"num_hidden_layers":24,"num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,
            "sliding_window":131072,"tie_word_embeddings":true,"use_sliding_window":false,"vocab_size":151936})");
        CHECK(c.family == model_family::qwen2);
        CHECK(c.head_dim == 64);
        CHECK(c.bias.qkv);
        CHECK(!c.bias.o);
        CHECK(c.tied_embeddings);
    }
    SUBCASE("Phi-3-mini")
    {
        const auto c = cfg(R"({"architectures":["Phi3ForCausalLM"],"attention_bias":false,"bos_token_id":1,"eos_token_id":32000,
            "hidden_act":"silu","hidden_size":3072,"intermediate_size":8192,"max_position_embeddings":4096,"model_type":"phi3",
            "num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":32,"original_max_position_embeddings":4096,
            "rms_norm_eps":1e-05,"rope_scaling":null,"rope_theta":10000.0,"sliding_window":2047,"tie_word_embeddings":false,"vocab_size":32064})");
        CHECK(c.family == model_family::phi3);
        CHECK(c.head_dim == 96);
        CHECK(c.rotary_dims == 96);
        CHECK(c.eos_token == 32000);
    }
    SUBCASE("GPT-2 small: n_inner null means 4d, GELU tanh, learned positions, tied")
    {
        const auto c = cfg(R"({"activation_function":"gelu_new","architectures":["GPT2LMHeadModel"],"attn_pdrop":0.1,"bos_token_id":50256,
            "embd_pdrop":0.1,"eos_token_id":50256,"initializer_range":0.02,"layer_norm_epsilon":1e-05,"model_type":"gpt2","n_ctx":1024,
            "n_embd":768,"n_head":12,"n_layer":12,"n_positions":1024,"resid_pdrop":0.1,"vocab_size":50257})");
        CHECK(c.family == model_family::gpt2);
        CHECK(c.ffn_size == 3072);
        CHECK(c.head_dim == 64);
        CHECK(c.activation == activation_kind::gelu_tanh);
        CHECK(c.norm == norm_kind::layer);
        CHECK(c.rope == rope_style::none);
        CHECK(c.learned_positions);
        CHECK(c.tied_embeddings);
        CHECK(c.max_positions == 1024);
        CHECK(c.bias.qkv);
        CHECK(c.bias.norm);
    }
    SUBCASE("Pythia-160m: rotary_pct 0.25 of 64, parallel residual, untied")
    {
        const auto c = cfg(R"({"architectures":["GPTNeoXForCausalLM"],"bos_token_id":0,"eos_token_id":0,"hidden_act":"gelu","hidden_size":768,
            "initializer_range":0.02,"intermediate_size":3072,"layer_norm_eps":1e-05,"max_position_embeddings":2048,"model_type":"gpt_neox",
            "num_attention_heads":12,"num_hidden_layers":12,"rotary_emb_base":10000,"rotary_pct":0.25,"tie_word_embeddings":false,
            "use_cache":true,"use_parallel_residual":true,"vocab_size":50304})");
        CHECK(c.family == model_family::neox);
        CHECK(c.rotary_dims == 16);
        CHECK(c.parallel_residual);
        CHECK(!c.shared_input_norm);
        CHECK(c.activation == activation_kind::gelu_erf);
        CHECK(!c.tied_embeddings);
        CHECK(c.bias.qkv);
    }
    SUBCASE("Falcon-7B: multi-query, one shared norm, no linear biases, tied")
    {
        const auto c = cfg(R"({"alibi":false,"apply_residual_connection_post_layernorm":false,"architectures":["FalconForCausalLM"],
            "attention_dropout":0.0,"bias":false,"bos_token_id":11,"eos_token_id":11,"hidden_dropout":0.0,"hidden_size":4544,
            "initializer_range":0.02,"layer_norm_epsilon":1e-05,"model_type":"falcon","multi_query":true,"new_decoder_architecture":false,
            "num_attention_heads":71,"num_hidden_layers":32,"parallel_attn":true,"vocab_size":65024})");
        CHECK(c.family == model_family::falcon);
        CHECK(c.num_kv_heads == 1);
        CHECK(c.head_dim == 64);
        CHECK(c.ffn_size == 4 * 4544);
        CHECK(c.parallel_residual);
        CHECK(c.shared_input_norm);
        CHECK(!c.bias.qkv);
        CHECK(c.bias.norm);
        CHECK(c.tied_embeddings);
        CHECK(c.rotary_dims == 64);
    }
    SUBCASE("Falcon-40B: new decoder, 8 key/value groups, two norms")
    {
        const auto c = cfg(R"({"alibi":false,"apply_residual_connection_post_layernorm":false,"architectures":["FalconForCausalLM"],
            "bias":false,"bos_token_id":11,"eos_token_id":11,"hidden_size":8192,"layer_norm_epsilon":1e-05,"model_type":"falcon",
            "multi_query":true,"new_decoder_architecture":true,"num_attention_heads":128,"num_hidden_layers":60,"num_kv_heads":8,
            "parallel_attn":true,"vocab_size":65024})");
        CHECK(c.num_kv_heads == 8);
        CHECK(c.parallel_residual);
        CHECK(!c.shared_input_norm);
    }
    SUBCASE("model_type absent: architectures decides")
    {
        const auto c = cfg(R"({"architectures":["MistralForCausalLM"],"hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,
            "intermediate_size":96,"vocab_size":10})");
        CHECK(c.family == model_family::mistral);
        CHECK(c.num_kv_heads == 4);
    }
}

TEST_CASE("configs the forward pass could not honour, and inconsistent ones, are input errors naming the file")
{
    const auto cfg = [](const std::string& text) { return hf_model_config(json::parse(text), "/models/x/config.json"); };
    const std::string llama = R"("hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":96,"vocab_size":10)";
    expect_input_error([&] { cfg(R"({"model_type":"t5"})"); }, {"/models/x/config.json", "t5", "llama, mistral"});
    expect_input_error([&] { cfg(R"({"model_type":"llama","hidden_size":64})"); }, {"/models/x/config.json", "num_hidden_layers"});
    expect_input_error([&] { cfg(R"({"model_type":"llama",)" + llama + R"(,"rope_scaling":{"rope_type":"llama3","factor":8.0}})"); },
                       {"rope_scaling"});
    expect_input_error([&] { cfg(R"({"model_type":"llama",)" + llama + R"(,"num_key_value_heads":3})"); }, {"key/value head"});
    expect_input_error([&] { cfg(R"({"model_type":"llama",)" + llama + R"(,"hidden_act":"gelu"})"); }, {"hidden_act"});
    expect_input_error([&] { cfg(R"({"model_type":"llama","hidden_size":-64,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":96,"vocab_size":10})"); },
                       {"hidden_size", "positive"});
    expect_input_error([&] { cfg(R"({"model_type":"falcon","alibi":true,"hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10})"); },
                       {"alibi", "unsupported"});
    expect_input_error([&] { cfg(R"({"model_type":"gpt2","n_embd":66,"n_layer":1,"n_head":4,"n_positions":8,"vocab_size":10})"); },
                       {"multiple of the head count"});
    expect_input_error([&] { cfg("[1, 2]"); }, {"/models/x/config.json"});
}

TEST_CASE("tensors that disagree with the config are input errors naming the checkpoint and tensor")
{
    temp_dir dir;
    const auto c = small_config(model_family::neox);
    write_hf_checkpoint(dir.path().string(), c, random_weights(c, 5), dtype::f16);
    const auto config_file = dir / "config.json";
    auto j = read_json(config_file);

    SUBCASE("a size the tensors do not have")
    {
        j["intermediate_size"] = 100;
        write_text(config_file, j.dump());
        expect_input_error([&] { load_model(dir.path().string()); },
                           {dir.path().string(), "gpt_neox.layers.0.mlp.dense_h_to_4h.weight", "[96, 64]", "[100, 64]"});
    }
    SUBCASE("a tensor the layout needs but the file lacks")
    {
        j["tie_word_embeddings"] = false;
        j["attention_bias"] = true;
        write_text(config_file, j.dump());
        auto ck = read_safetensors(dir.path().string());
        std::vector<tensor_bytes> keep;
        for (const auto& t : ck.tensors.tensors())
            if (t.name != "gpt_neox.layers.1.attention.dense.bias")
                keep.push_back({t.name, t.type, t.shape, std::vector<std::byte>(t.data, t.data + t.nbytes)});
        write_safetensors((dir / "model.safetensors").string(), keep);
        expect_input_error([&] { load_model(dir.path().string()); }, {dir.path().string(), "missing tensor 'gpt_neox.layers.1.attention.dense.bias'"});
    }
    SUBCASE("an unsupported model_type in an otherwise good checkpoint")
    {
        j["model_type"] = "mamba";
        write_text(config_file, j.dump());
        expect_input_error([&] { load_model(dir.path().string()); }, {config_file.string(), "mamba", "supported"});
    }
}

TEST_CASE("GPT-2 checkpoints without the transformer. prefix load too")
{
    temp_dir dir;
    const auto c = small_config(model_family::gpt2);
    const auto w = random_weights(c, 9);
    write_hf_checkpoint(dir.path().string(), c, w, dtype::f32);
    // The OpenAI conversion: no prefix, plus the causal-mask buffer "h.N.attn.bias" to ignore.
    auto ck = read_safetensors(dir.path().string());
    std::vector<tensor_bytes> renamed;
    for (const auto& t : ck.tensors.tensors())
        renamed.push_back({t.name.substr(std::string("transformer.").size()), t.type, t.shape, std::vector<std::byte>(t.data, t.data + t.nbytes)});
    const std::vector<float> mask(4, 1.0f);
    renamed.push_back({"h.0.attn.bias", dtype::f32, {1, 1, 2, 2}, encode_floats(mask.data(), 4, dtype::f32)});
    write_safetensors((dir / "model.safetensors").string(), renamed);
    const auto m = load_model(dir.path().string());
    check_round_trip(materialize(m), w, dtype::f32);
}

TEST_CASE("the writer refuses configs and weights a family's files cannot express")
{
    temp_dir dir;
    auto mistral = small_config(model_family::mistral);
    mistral.bias.qkv = true;
    expect_input_error([&] { hf_config_json(mistral); }, {"mistral", "bias"});
    auto gpt2 = small_config(model_family::gpt2);
    gpt2.rope = rope_style::half;
    expect_input_error([&] { hf_config_json(gpt2); }, {"gpt2", "rope"});
    const auto llama = small_config(model_family::llama);
    auto w = random_weights(llama, 1);
    w.layers[0].bq = Eigen::VectorXf::Zero(64);
    expect_input_error([&] { write_hf_checkpoint((dir / "a").string(), llama, w, dtype::f32); }, {"bq", "no place"});
    w = random_weights(llama, 1);
    w.layers[1].wk.resize(16, 64);
    expect_input_error([&] { write_hf_checkpoint((dir / "b").string(), llama, w, dtype::f32); }, {"wk of layer 1"});
}

#ifdef SDLENS_CLI
TEST_CASE("sdlens info describes a checkpoint, in JSON on request")
{
    temp_dir dir;
    const auto c = small_config(model_family::qwen2);
    write_hf_checkpoint(dir.path().string(), c, random_weights(c, 2), dtype::bf16);

    const auto r = sdlens::test::run_cli("info \"" + dir.path().string() + "\" --json");
    REQUIRE(r.exit_code == 0);
    const auto j = json::parse(r.out);
    CHECK(j["format"] == "safetensors");
    CHECK(j["family"] == "qwen2");
    CHECK(j["hidden_size"] == 64);
    CHECK(j["num_layers"] == 2);
    CHECK(j["num_heads"] == 4);
    CHECK(j["num_kv_heads"] == 2);
    CHECK(j["head_dim"] == 16);
    CHECK(j["ffn_size"] == 96);
    CHECK(j["vocab_size"] == 128);
    CHECK(j["norm"] == "rmsnorm");
    CHECK(j["activation"] == "swiglu");
    CHECK(j["parallel_residual"] == false);
    CHECK(j["dtype"] == "bf16");
    // Embedding + final norm + 2 layers x (2 norms, q/k/v weights and biases, o, gate, up, down).
    const std::size_t tensors = 2 + 2 * 12;
    CHECK(j["tensor_count"] == tensors);
    CHECK(j["tensors"].size() == tensors);
    CHECK(j["dtype_counts"]["bf16"] == tensors);
    CHECK(j["tensors"][0].contains("name"));
    CHECK(j["tensors"][0].contains("shape"));
    // bf16: two bytes for each of the parameters.
    const std::int64_t params = 128 * 64 + 64 + 2 * (2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 + 2 * 32 + 64 * 64 + 3 * 96 * 64);
    CHECK(j["total_bytes"] == 2 * params);
    CHECK(j["parameters"] == params);

    const auto text = sdlens::test::run_cli("info \"" + dir.path().string() + "\"");
    CHECK(text.exit_code == 0);
    CHECK(text.out.find("qwen2") != std::string::npos);

    const auto missing = sdlens::test::run_cli("info /nonexistent/model");
    CHECK(missing.exit_code == 2);
    CHECK(missing.err.find("/nonexistent/model") != std::string::npos);
    CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);
}
#endif
