// The analyses of include/sdlens/analysis/ against independent float64 implementations (the
// reference forward pass of reference_forward.hpp, the dense maps of linearize_support.hpp,
// Eigen's JacobiSVD and EigenSolver in dense_reference.cpp), and against the ground truth of
// planted checkpoints at sizes and seeds the other tests do not use.
#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include <doctest/doctest.h>
#include <xtensor/xview.hpp>

#include <sdlens/analysis/ablation.hpp>
#include <sdlens/analysis/coefficients.hpp>
#include <sdlens/analysis/detect_layers.hpp>
#include <sdlens/analysis/direction_stability.hpp>
#include <sdlens/analysis/empirical_direction.hpp>
#include <sdlens/analysis/exploding_paths.hpp>
#include <sdlens/analysis/explosion_subspace.hpp>
#include <sdlens/analysis/layer_angles.hpp>
#include <sdlens/analysis/norm_profile.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/plant.hpp>

#include "dense_reference.hpp"
#include "linearize_support.hpp"
#include "reference_forward.hpp"
#include "support.hpp"

namespace {

using namespace sdlens;
using Eigen::MatrixXd;
using Eigen::VectorXd;

// A planted checkpoint written and read back, with its weights for the float64 references.
struct planted_checkpoint {
    test::temp_dir dir;
    planted_model p;
    model m;
    dense_weights dense;
};

std::unique_ptr<planted_checkpoint> planted(model_family f, std::uint64_t seed, std::int64_t d = 48, std::int64_t layers = 7, int E = 3, int D = 6)
{
    plant_sizes s;
    s.hidden = d;
    s.layers = layers;
    s.heads = 4;
    s.vocab = 96;
    plant_options o;
    o.explosion_layer = E;
    o.decay_layer = D;
    o.seed = seed;
    auto c = std::make_unique<planted_checkpoint>();
    c->p = plant_random_model(plant_model_config(f, s), o);
    write_hf_checkpoint(c->dir.path().string(), c->p.config, c->p.weights, dtype::f32);
    c->m = load_model(c->dir.path().string());
    c->dense = materialize(c->m);
    return c;
}

// Ordinary tokens: neither BOS/EOS nor a trigger.
std::vector<int> ordinary_tokens(const planted_checkpoint& c, int n, int first = 20)
{
    std::vector<int> out;
    const auto& trig = c.p.truth.trigger_tokens;
    for (int t = first; static_cast<int>(out.size()) < n; ++t)
        if (t != c.m.config.bos_token && t != c.m.config.eos_token && std::find(trig.begin(), trig.end(), t) == trig.end()) out.push_back(t);
    return out;
}

int delimiter(const planted_checkpoint& c) { return static_cast<int>(c.p.truth.trigger_tokens.back()); }

double rel(const MatrixXd& a, const MatrixXd& b) { return (a - b).norm() / b.norm(); }

// float32 pass vs float64 reference: each state is a sum over ~L layers of products of d-term
// float sums (relative rounding ~ sqrt(d) 6e-8 each); high norms cancel at the decay layer
// (8000 -> ~K), which amplifies the absolute error there by ~ 8000 / K: 1e-4 relative bounds it.
constexpr double state_tolerance = 1e-4;

}  // namespace

TEST_CASE("forward: independent sequences in one batch equal one pass per sequence")
{
    for (model_family f : {model_family::llama, model_family::gpt2, model_family::neox}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const auto c = planted(f, 301);
        const std::vector<int> toks = ordinary_tokens(*c, 6);
        for (int S : {1, 2, 3}) {
            CAPTURE(S);
            forward_options o;
            o.sequence_length = S;
            o.hidden_states = true;
            o.logits = forward_options::logits_mode::last;
            session batch(c->m, o);
            const forward_result r = batch.run(toks);
            REQUIRE(r.logits.rows() == static_cast<Eigen::Index>(toks.size() / S));
            forward_options one;
            one.hidden_states = true;
            for (std::size_t i = 0; i < toks.size(); i += static_cast<std::size_t>(S)) {
                const std::vector<int> seq(toks.begin() + static_cast<std::ptrdiff_t>(i), toks.begin() + static_cast<std::ptrdiff_t>(i) + S);
                const forward_result ref = forward(c->m, seq, one);
                for (std::size_t l = 0; l < r.hidden.shape(0); ++l)
                    for (int t = 0; t < S; ++t)
                        for (std::size_t k = 0; k < r.hidden.shape(2); ++k)
                            // Same operations in another blocking of the products: float rounding only.
                            REQUIRE(std::abs(r.hidden(l, i + static_cast<std::size_t>(t), k) - ref.hidden(l, static_cast<std::size_t>(t), k)) <=
                                    1e-4f * (1 + std::abs(ref.hidden(l, static_cast<std::size_t>(t), k))));
                const Eigen::VectorXf last = r.logits.row(static_cast<Eigen::Index>(i) / S);
                CHECK((last - ref.logits.row(0).transpose()).cwiseAbs().maxCoeff() <= 1e-3f * (1 + ref.logits.cwiseAbs().maxCoeff()));
            }
            CHECK_THROWS_AS(batch.run(toks), input_error);  // a batch leaves the session spent
        }
        forward_options bad;
        bad.sequence_length = 4;
        session s(c->m, bad);
        CHECK_THROWS_AS(s.run(toks), input_error);  // 6 tokens are not whole sequences of 4
    }
}

TEST_CASE("forward: run_embeddings equals run on the embedding rows; last_layer stops early")
{
    const auto c = planted(model_family::gpt2, 302);
    const std::vector<int> toks{delimiter(*c), 30, 31, 32};
    forward_options o;
    o.hidden_states = true;
    o.logits = forward_options::logits_mode::none;
    const forward_result a = forward(c->m, toks, o);
    row_matrix<float> x(static_cast<Eigen::Index>(toks.size()), c->m.config.hidden_size);
    for (std::size_t t = 0; t < toks.size(); ++t) x.row(static_cast<Eigen::Index>(t)) = c->p.weights.token_embedding.row(toks[t]);
    session s(c->m, o);
    const forward_result b = s.run_embeddings(x);
    CHECK(xt::allclose(a.hidden, b.hidden, 0.0, 0.0));  // the very same operations
    o.last_layer = 2;
    const forward_result early = forward(c->m, toks, o);
    REQUIRE(early.hidden.shape(0) == 3);
    CHECK(xt::allclose(xt::view(a.hidden, xt::range(0, 3)), early.hidden, 0.0, 0.0));
    forward_options with_logits;
    with_logits.last_layer = 2;
    CHECK_THROWS_AS(forward(c->m, toks, with_logits), input_error);
    row_matrix<float> narrow(2, c->m.config.hidden_size - 1);
    session s2(c->m, o);
    CHECK_THROWS_AS(s2.run_embeddings(narrow), input_error);
}

TEST_CASE("forward: ablation at the FFN block input removes the direction before the norm, and only for the FFN")
{
    for (model_family f : {model_family::llama, model_family::neox}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const auto c = planted(f, 303);
        const int E = static_cast<int>(c->p.truth.explosion_layer);
        const std::vector<int> toks{static_cast<int>(c->m.config.bos_token), 20, delimiter(*c), 21};
        VectorXd v = test::random_block(c->m.config.hidden_size, 1, 5).col(0).normalized();
        forward_options o;
        o.capture_ffn_layer = E;
        o.hidden_states = true;
        o.ablations.push_back({E, (3.0 * v).cast<float>(), ablation_site::ffn_block_input});
        const forward_result r = forward(c->m, toks, o);
        const dense_layer& L = c->dense.layers[static_cast<std::size_t>(E - 1)];
        for (Eigen::Index t = 0; t < r.ffn_input_raw.rows(); ++t) {
            const VectorXd x = r.ffn_input_raw.row(t).transpose().cast<double>();
            const VectorXd y = x - x.dot(v) * v;
            const VectorXd want = test::ref::norm(c->m.config, y, L.ffn_norm.size() ? L.ffn_norm : L.attn_norm,
                                                  L.ffn_norm.size() ? L.ffn_norm_bias : L.attn_norm_bias);
            CHECK(rel(r.ffn_input.row(t).transpose().cast<double>(), want) <= 1e-5);  // float norm of d terms
        }
        // The residual stream keeps its component along v: layers before E are untouched, and the
        // block input itself is the unablated one.
        forward_options plain = o;
        plain.ablations.clear();
        const forward_result p = forward(c->m, toks, plain);
        CHECK(xt::allclose(xt::view(r.hidden, xt::range(0, E)), xt::view(p.hidden, xt::range(0, E)), 0.0, 0.0));
        CHECK((r.ffn_input_raw - p.ffn_input_raw).cwiseAbs().maxCoeff() == 0.0f);
    }
}

TEST_CASE("norm profile: the norms of every layer index equal the float64 reference's")
{
    for (model_family f : {model_family::llama, model_family::gpt2}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const auto c = planted(f, 304);
        const std::vector<int> toks{static_cast<int>(c->m.config.bos_token), 20, 21, delimiter(*c), 22, 23};
        const norm_profile p = token_norms(c->m, toks);
        const test::reference_result ref = test::reference_forward(c->m.config, c->dense, toks);
        REQUIRE(p.norms.rows() == static_cast<Eigen::Index>(ref.hidden.size()));
        for (Eigen::Index l = 0; l < p.norms.rows(); ++l)
            for (Eigen::Index t = 0; t < p.norms.cols(); ++t)
                CHECK(p.norms(l, t) == doctest::Approx(ref.hidden[static_cast<std::size_t>(l)].row(t).norm()).epsilon(state_tolerance));
    }
}

TEST_CASE("automatic threshold: the largest gap above five medians, or none")
{
    std::vector<double> n;
    for (int i = 0; i < 1000; ++i) n.push_back(10 + 0.04 * i);  // ordinary: 10..50
    std::vector<double> with_high = n;
    for (int i = 0; i < 30; ++i) with_high.push_back(900 + i);  // high: 900..929
    const threshold_choice c = automatic_threshold(with_high);
    CHECK(c.found);
    CHECK(c.gap_low == doctest::Approx(10 + 0.04 * 999));
    CHECK(c.gap_high == doctest::Approx(900));
    CHECK(c.threshold == doctest::Approx(std::sqrt(c.gap_low * 900)));
    // The same shape at 100x the scale gives 100x the threshold: ratios only.
    for (auto& x : with_high) x *= 100;
    CHECK(automatic_threshold(with_high).threshold == doctest::Approx(100 * c.threshold));
    CHECK_FALSE(automatic_threshold(n).found);  // no state five medians out
    std::vector<double> smooth = n;
    for (int i = 0; i < 200; ++i) smooth.push_back(50 * std::pow(1.02, i));  // a tail without a gap
    CHECK_FALSE(automatic_threshold(smooth).found);
}

TEST_CASE("empirical direction: mean, counts and pairwise angle against float64, within a degree of the planted u")
{
    for (model_family f : {model_family::llama, model_family::phi3, model_family::gpt2}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const auto c = planted(f, 305 + static_cast<int>(f));
        const int bos = static_cast<int>(c->m.config.bos_token), dl = delimiter(*c);
        std::vector<std::vector<int>> corpus;
        for (int i = 0; i < 6; ++i) {
            std::vector<int> s;
            if (f != model_family::gpt2) s.push_back(bos);
            for (int t : ordinary_tokens(*c, 5 + i, 20 + 3 * i)) s.push_back(t);
            s.push_back(dl);
            s.push_back(40 + i);
            corpus.push_back(s);
        }
        std::size_t next = 0;
        const sequence_source source = [&]() -> std::optional<std::vector<int>> {
            if (next == corpus.size()) return std::nullopt;
            return corpus[next++];
        };
        empirical_options o;
        o.calibration_sequences = 3;
        const empirical_result r = empirical_high_norm_direction(c->m, source, o);
        REQUIRE(r.automatic.found);
        CHECK(r.sequences == 6);

        // The float64 reference: every state above the same threshold, signs aligned to the first.
        std::vector<VectorXd> high;
        std::vector<std::int64_t> per_layer(static_cast<std::size_t>(c->m.config.num_layers + 1), 0);
        for (const auto& s : corpus) {
            const auto ref = test::reference_forward(c->m.config, c->dense, s);
            for (std::size_t l = 0; l < ref.hidden.size(); ++l)
                for (Eigen::Index t = 0; t < ref.hidden[l].rows(); ++t)
                    if (ref.hidden[l].row(t).norm() > r.threshold) {
                        high.push_back(ref.hidden[l].row(t).transpose());
                        ++per_layer[l];
                    }
        }
        REQUIRE(high.size() > 2);
        VectorXd mean = VectorXd::Zero(c->m.config.hidden_size);
        for (const auto& x : high) mean += x.dot(high.front()) < 0 ? VectorXd(-x) : x;
        double angles = 0;
        std::int64_t pairs = 0;
        for (std::size_t i = 0; i < high.size(); ++i)
            for (std::size_t j = i + 1; j < high.size(); ++j, ++pairs) angles += acute_angle_degrees(high[i], high[j]);
        CHECK(r.states == static_cast<std::int64_t>(high.size()));
        CHECK(r.per_layer_count == per_layer);
        // Float states carry ~1e-6 relative error: directions agree to ~1e-4 degrees.
        CHECK(acute_angle_degrees(r.direction, mean) < 1e-3);
        CHECK(r.mean_pairwise_angle_deg == doctest::Approx(angles / static_cast<double>(pairs)).epsilon(1e-3));
        CHECK_FALSE(r.angle_sampled);
        CHECK(acute_angle_degrees(r.direction, c->p.truth.direction) < 1.0);
        // The high-norm tokens are the triggers: the delimiter (non-initial), and BOS or any
        // first token (initial) where position 0 triggers.
        REQUIRE_FALSE(r.tokens.empty());
        std::set<int> found;
        for (const auto& t : r.tokens) found.insert(t.token);
        CHECK(found.count(dl) == 1);
        for (const auto& t : r.tokens)
            if (!t.initial) CHECK(t.token == dl);

        // Above the sample cap, the angle is over a seeded sample: deterministic, and the flag says so.
        empirical_accumulator a1(c->m.config.hidden_size, r.threshold, [] { empirical_options s; s.angle_sample_cap = 4; return s; }());
        empirical_accumulator a2(c->m.config.hidden_size, r.threshold, [] { empirical_options s; s.angle_sample_cap = 4; return s; }());
        forward_options fo;
        fo.hidden_states = true;
        fo.logits = forward_options::logits_mode::none;
        for (const auto& s : corpus) {
            const auto h = forward(c->m, s, fo).hidden;
            a1.add(h, s);
            a2.add(h, s);
        }
        const empirical_result s1 = a1.result(), s2 = a2.result();
        CHECK(s1.angle_sampled);
        CHECK(s1.angle_states == 4);
        CHECK(s1.mean_pairwise_angle_deg == s2.mean_pairwise_angle_deg);
        CHECK(acute_angle_degrees(s1.direction, r.direction) < 1e-9);  // the mean does not sample
    }
}

namespace {
// The eigenvector of R (EigenSolver) whose real part, after the phase that makes its largest
// component real as LAPACK does, is at the smallest acute angle to the direction; the runner-up
// angle says whether "the best" is well defined.
struct reference_alignment {
    double angle = 90, runner_up = 90;
    std::complex<double> value;
};
reference_alignment reference_best_eigenvector(const MatrixXd& R, const VectorXd& dir)
{
    const test::reference_eig_result eig = test::reference_eig(R);
    reference_alignment best;
    for (Eigen::Index j = 0; j < eig.vectors.cols(); ++j) {
        Eigen::VectorXcd v = eig.vectors.col(j);
        Eigen::Index imax = 0;
        v.cwiseAbs().maxCoeff(&imax);
        v *= std::conj(v[imax]) / std::abs(v[imax]);
        const double a = acute_angle_degrees(v.real(), dir);
        // A conjugate pair has one real part: count it once.
        if (std::abs(a - best.angle) < 1e-9) continue;
        if (a < best.angle) best.runner_up = best.angle, best.angle = a, best.value = eig.values[j];
        else best.runner_up = std::min(best.runner_up, a);
    }
    return best;
}
}  // namespace

TEST_CASE("layer angles: u_1 against JacobiSVD, the best-aligned of all eigenvectors against EigenSolver on the dense R")
{
    // A random model (generic spectrum: the best-aligned eigenvector is unique) and a random direction.
    const test::built_model b = test::make_model(model_family::llama, 40, 60, 4, 2, dtype::f32, 7, 3);
    const VectorXd dir = test::random_block(40, 1, 8).col(0);
    const auto rows = layer_angles(b.m, dir);
    REQUIRE(rows.size() == 3);
    for (const auto& row : rows) {
        CAPTURE(row.layer);
        const auto& w = b.m.layers[static_cast<std::size_t>(row.layer - 1)];
        const test::dense_reference ref = test::reference(b.m, row.layer - 1, exact_ffn_row_scales(b.m.config, w));
        const test::reference_svd_result svd = test::reference_svd(ref.l);
        CHECK(row.sigma_1 == doctest::Approx(svd.sigma[0]).epsilon(1e-8));
        CHECK(acute_angle_degrees(row.u1, svd.u.col(0)) < 1e-4);
        CHECK(row.u1_angle_deg == doctest::Approx(acute_angle_degrees(svd.u.col(0), dir)).epsilon(1e-6));
        const reference_alignment want = reference_best_eigenvector(ref.r, dir);
        REQUIRE(want.runner_up - want.angle > 1e-3);
        // R from the operator and from the definitions agree to ~1e-14: eigenvectors of a simple
        // eigenvalue move by that over the eigenvalue gap.
        CHECK(row.eig_angle_deg == doctest::Approx(want.angle).epsilon(1e-6));
        CHECK(std::abs(row.eigenvalue - want.value) <= 1e-8 * (1 + std::abs(want.value)));
    }

    // Planted: the decay layer's R u = -c' u (a simple eigenvalue), the explosion layer's R = c u t^T
    // on span{t, u} (eigenvalue 0, defective: its one eigenvector is u). In the other layers R is
    // zero on span{t, u}: every vector there is an eigenvector and "the best-aligned" is not
    // unique, so those layers are not compared.
    const auto c = planted(model_family::llama, 311, 40, 5, 2, 4);
    const VectorXd u = c->p.truth.direction;
    const auto prow = layer_angles(c->m, u);
    for (std::int64_t l : {2, 4}) {
        CAPTURE(l);
        const auto& row = prow[static_cast<std::size_t>(l - 1)];
        const test::dense_reference ref = test::reference(c->m, l - 1, exact_ffn_row_scales(c->m.config, c->m.layers[static_cast<std::size_t>(l - 1)]));
        const reference_alignment want = reference_best_eigenvector(ref.r, u);
        // A defective eigenvalue's eigenvector is computed to ~sqrt(eps) (1e-8 rad ~ 1e-6 deg).
        CHECK(row.eig_angle_deg == doctest::Approx(want.angle).epsilon(1e-3).scale(1e-4));
        CHECK(row.eig_angle_deg < 1.0);
    }
    // The explosion layer's best-aligned eigenvector has eigenvalue ~0, the smallest there is: a
    // top-k (largest-magnitude) search would miss it. The decay layer's is negative.
    CHECK(std::abs(prow[1].eigenvalue) < 1e-3);
    CHECK(prow[3].eigenvalue.real() == doctest::Approx(c->p.truth.decay_eigenvalue).epsilon(1e-6));
    CHECK_THROWS_AS(layer_angles(c->m, VectorXd::Ones(7)), input_error);

    // u_1 and sigma_1 handed over from the data-free detection (as the report does) give the same
    // rows; of the wrong shape, an input_error.
    const detected_layers det = detect_layers_data_free(c->m);
    layer_angle_options known;
    known.known_sigma_1 = det.sigma_1;
    known.known_u_1 = det.u_1;
    const auto krow = layer_angles(c->m, u, known);
    REQUIRE(krow.size() == prow.size());
    for (std::size_t i = 0; i < krow.size(); ++i) {
        CHECK(krow[i].sigma_1 == prow[i].sigma_1);
        CHECK(krow[i].u1_angle_deg == doctest::Approx(prow[i].u1_angle_deg).epsilon(1e-9).scale(1e-9));
        CHECK(krow[i].eig_angle_deg == prow[i].eig_angle_deg);
    }
    known.known_u_1 = det.u_1.leftCols(2);
    CHECK_THROWS_AS(layer_angles(c->m, u, known), input_error);

    // The iterative search reaches the dense answer where the direction is near an eigenvector:
    // the planted explosion and decay layers, and on the random model, a real eigenvector of R
    // turned 5 degrees away.
    layer_angle_options iterative;
    iterative.search = eigen_search::iterative;
    iterative.layers = {2, 4};
    const auto it = layer_angles(c->m, u, iterative);
    for (std::size_t i = 0; i < it.size(); ++i) {
        CAPTURE(it[i].layer);
        CHECK(std::string(it[i].eig_method) == "iterative");
        const auto& dense_row = prow[static_cast<std::size_t>(it[i].layer - 1)];
        if (it[i].layer == 2) {
            // Defective eigenvalue 0 (a Jordan block c u t^T): rounding of size eps ||R|| moves a
            // computed eigenvalue by ~sqrt(eps ||R|| c) ~ 1e-6 and its vector by ~1e-5 rad. RQI
            // starts at u, which R sends exactly to 0 (t.u = 0): it stops at once, exact.
            CHECK(it[i].rqi_converged);
            CHECK(it[i].eig_angle_deg < 0.01);
            CHECK(dense_row.eig_angle_deg < 0.01);
            CHECK(std::abs(it[i].eigenvalue - dense_row.eigenvalue) <= 1e-5);
        } else {
            // A simple eigenvalue, far from the rest: both searches agree to rounding.
            CHECK(it[i].eig_angle_deg == doctest::Approx(dense_row.eig_angle_deg).epsilon(1e-3).scale(1e-3));
            CHECK(std::abs(it[i].eigenvalue - dense_row.eigenvalue) <= 1e-6 * (1 + std::abs(dense_row.eigenvalue)));
        }
    }
    const test::dense_reference r1 = test::reference(b.m, 0, exact_ffn_row_scales(b.m.config, b.m.layers[0]));
    const test::reference_eig_result eig = test::reference_eig(r1.r);
    Eigen::Index real_index = -1;
    double smallest = 1e300;
    for (Eigen::Index j = 0; j < eig.values.size(); ++j)  // a real eigenvalue from the middle of the spectrum
        if (std::abs(eig.values[j].imag()) < 1e-12 && std::abs(std::abs(eig.values[j]) - 0.5) < smallest)
            smallest = std::abs(std::abs(eig.values[j]) - 0.5), real_index = j;
    REQUIRE(real_index >= 0);
    const VectorXd v = eig.vectors.col(real_index).real().normalized();
    VectorXd w = test::random_block(40, 1, 9).col(0);
    w -= w.dot(v) * v;
    const VectorXd near = std::cos(5 * 3.14159265358979323846 / 180) * v + std::sin(5 * 3.14159265358979323846 / 180) * w.normalized();
    layer_angle_options one_iterative = iterative, one_dense;
    one_iterative.layers = one_dense.layers = {1};
    one_iterative.top_k = 0;  // only the Rayleigh-quotient iteration
    const auto a = layer_angles(b.m, near, one_iterative), want = layer_angles(b.m, near, one_dense);
    CHECK(a[0].rqi_converged);
    CHECK(a[0].eig_angle_deg == doctest::Approx(want[0].eig_angle_deg).epsilon(1e-4));
    CHECK(a[0].eig_angle_deg == doctest::Approx(5.0).epsilon(0.2));
    // RQI stops at a backward error of 1e-6 ||R||: a simple eigenvalue is then off by about that
    // times its condition number (~1 here): ||R|| ~ 5, so 1e-4 bounds it.
    CHECK(a[0].rqi_residual <= 1e-6);
    CHECK(std::abs(a[0].eigenvalue - eig.values[real_index]) <= 1e-4);
}

TEST_CASE("explosion subspace: F's singular vectors against JacobiSVD, +-v_i through the FFN against float64; only v_1 explodes")
{
    for (model_family f : {model_family::llama, model_family::gpt2, model_family::neox}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const auto c = planted(f, 320 + static_cast<int>(f), 48, 6, 2, 5);
        const int E = 2;
        const auto& w = c->m.layers[E - 1];
        const test::dense_reference ref = test::reference(c->m, E - 1, exact_ffn_row_scales(c->m.config, w));
        const test::reference_svd_result svd = test::reference_svd(ref.f);
        explosion_subspace_options o;
        o.k = 8;
        const explosion_subspace_result r = explosion_subspace(c->m, E, o);
        for (Eigen::Index i = 0; i < 8; ++i) {
            CHECK(r.sigma[i] == doctest::Approx(svd.sigma[i]).epsilon(1e-7));
            if (i < 3) CHECK(acute_angle_degrees(r.v.col(i), svd.v.col(i)) < 1e-3);
        }
        explosion_subspace_options all;
        all.all = true;
        const explosion_subspace_result d = explosion_subspace(c->m, E, all);
        REQUIRE(d.sigma.size() == c->m.config.hidden_size);
        // F^T F squares the singular values: absolute error ~ eps sigma_1^2 / sigma_i.
        for (Eigen::Index i = 0; i < d.sigma.size(); ++i) CHECK(std::abs(d.sigma[i] - svd.sigma[i]) <= 1e-6 * svd.sigma[0]);
        CHECK(acute_angle_degrees(d.v.col(0), svd.v.col(0)) < 1e-4);

        // The real FFN block in float64: norm, nonlinearity, down projection.
        const dense_layer& L = c->dense.layers[E - 1];
        const model_config& cfg = c->m.config;
        auto block = [&](const VectorXd& x) {
            const bool shared = cfg.parallel_residual && cfg.shared_input_norm;
            const VectorXd n = test::ref::norm(cfg, x, shared || !L.ffn_norm.size() ? L.attn_norm : L.ffn_norm,
                                               shared || !L.ffn_norm.size() ? L.attn_norm_bias : L.ffn_norm_bias);
            VectorXd inner = test::ref::lin(L.w_up, L.b_up, n);
            if (cfg.activation == activation_kind::swiglu) {
                const VectorXd g = test::ref::lin(L.w_gate, Eigen::VectorXf(), n);
                for (Eigen::Index i = 0; i < g.size(); ++i) inner[i] *= g[i] / (1 + std::exp(-g[i]));
            } else {
                for (Eigen::Index i = 0; i < inner.size(); ++i) inner[i] = test::ref::act(cfg.activation, inner[i]);
            }
            return test::ref::lin(L.w_down, L.b_down, inner);
        };
        for (Eigen::Index i = 0; i < 8; ++i) {
            CHECK(r.plus_norms[i] == doctest::Approx(block(r.v.col(i)).norm()).epsilon(1e-4));
            CHECK(r.minus_norms[i] == doctest::Approx(block(-r.v.col(i)).norm()).epsilon(1e-4));
        }
        CHECK(r.ratio >= 10);
        CHECK(acute_angle_degrees(r.v.col(0), c->p.truth.trigger) < 1.0);  // F ~ c u t^T: v_1 is the trigger
    }
}

TEST_CASE("exploding paths: the planted triggers top the no-attention sweep; batches equal single-token passes")
{
    for (model_family f : {model_family::llama, model_family::qwen2, model_family::gpt2}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const auto c = planted(f, 330 + static_cast<int>(f));
        const int E = static_cast<int>(c->p.truth.explosion_layer);
        exploding_paths_options o;
        o.layer = E;
        o.batch = 17;  // several batches, the last one short
        const exploding_paths_result r = exploding_paths(c->m, o);
        const std::int64_t V = c->m.token_embedding.rows;
        REQUIRE(r.no_attention.size() == V);
        const auto& trig = c->p.truth.trigger_tokens;
        const auto top = top_tokens(r.no_attention, static_cast<std::int64_t>(trig.size()));
        std::set<std::int64_t> top_ids, want(trig.begin(), trig.end());
        for (const auto& t : top) top_ids.insert(t.token);
        CHECK(top_ids == want);
        for (int t : {5, 20, delimiter(*c), static_cast<int>(V - 1)}) {
            CAPTURE(t);
            if (r.masked[static_cast<std::size_t>(t)]) continue;
            forward_options no_attn;
            no_attn.zero_attention = true;
            CHECK(r.no_attention[t] == doctest::Approx(token_norms(c->m, {t}, no_attn).norms(E, 0)).epsilon(1e-5));
            CHECK(r.initial[t] == doctest::Approx(token_norms(c->m, {t}).norms(E, 0)).epsilon(1e-5));
        }
        std::int64_t trained = 0;
        for (bool m : r.masked) trained += !m;
        CHECK(r.random_sorted.size() == trained);
        CHECK(std::is_sorted(r.random_sorted.data(), r.random_sorted.data() + r.random_sorted.size(), std::greater<double>()));
        // Where position 0 triggers, every token at position 0 explodes; through self-attention
        // (no learned positions) the typical random embedding there does not: it lacks the bias
        // unit e0 that every trained row carries (a negative random e0 component can open the
        // trigger: model/plant_initial.hpp).
        if (c->p.truth.position0_triggers) CHECK(r.initial.minCoeff() > 0.5 * c->p.truth.explosion_norm);
        if (c->p.truth.initial_trigger_layer > 0)
            CHECK(r.random_sorted[r.random_sorted.size() / 2] < 0.01 * c->p.truth.explosion_norm);
    }
}

TEST_CASE("coefficients on v_1: batches equal single passes; position 0 far exceeds position 1 in every family")
{
    for (model_family f : {model_family::gpt2, model_family::llama, model_family::qwen2, model_family::phi3, model_family::neox,
                           model_family::falcon, model_family::mpt}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        // E = 0: the family's default, where any token at position 0 triggers (gpt2 through its
        // learned position 0, the others through self-attention, model/plant_initial.hpp).
        const auto c = planted(f, 340 + static_cast<int>(f), 48, 7, 0, 6);
        REQUIRE(c->p.truth.position0_triggers);
        const int E = static_cast<int>(c->p.truth.explosion_layer);
        layer_analysis_options lo;
        lo.k = 1;
        const VectorXd v1 = ffn_right_singular_vectors(c->m, E, lo).v.col(0);
        coefficients_options o;
        o.layer = E;
        o.batch = 13;
        const coefficients_result r = ffn_input_coefficients(c->m, v1, o);
        REQUIRE(r.tokens.size() > 10);
        CHECK(r.first_token != c->m.config.bos_token);
        forward_options fo;
        fo.capture_ffn_layer = E;
        for (std::size_t i : {std::size_t(0), std::size_t(7), r.tokens.size() - 1}) {
            const int t = r.tokens[i];
            const auto a = forward(c->m, {t}, fo), b = forward(c->m, {r.first_token, t}, fo);
            CHECK(r.initial[static_cast<Eigen::Index>(i)] == doctest::Approx(a.ffn_input_raw.row(0).cast<double>().dot(v1)).epsilon(1e-5));
            // Ordinary tokens have no t component at position 1 (exactly 0 with learned positions;
            // < 1e-4 N0 from the initial-token path's trigger neurons otherwise): what is left is
            // float rounding, ~1e-7 of the stream's norm, in either pass.
            const double x = b.ffn_input_raw.row(1).norm();
            CHECK(std::abs(r.second[static_cast<Eigen::Index>(i)] - b.ffn_input_raw.row(1).cast<double>().dot(v1)) <= 1e-5 * (1 + x));
        }
        // Ordinary tokens: large at position 0 (K t, or N0 t), ~0 at position 1. The exception
        // without learned positions is the first token itself: after itself it is a repeated
        // token, which triggers at every position in a RoPE model (plant_initial.hpp).
        const auto& trig = c->p.truth.trigger_tokens;
        for (std::size_t i = 0; i < r.tokens.size(); ++i) {
            if (std::find(trig.begin(), trig.end(), r.tokens[i]) != trig.end()) continue;
            if (!c->m.config.learned_positions && r.tokens[i] == r.first_token) continue;
            CAPTURE(r.tokens[i]);
            CHECK(std::abs(r.initial[static_cast<Eigen::Index>(i)]) > 100 * std::abs(r.second[static_cast<Eigen::Index>(i)]) + 1);
        }
        CHECK_THROWS_AS(ffn_input_coefficients(c->m, VectorXd::Ones(3), o), input_error);
    }
}

TEST_CASE("ablation removes the high norms; detection finds E and D both ways; stability of one model is zero")
{
    for (model_family f : {model_family::llama, model_family::phi3, model_family::gpt2, model_family::neox, model_family::qwen2,
                           model_family::falcon, model_family::mpt}) {
        const std::string family = family_name(f);
        CAPTURE(family);
        const int E = 2, D = 5;
        const auto c = planted(f, 350 + static_cast<int>(f), 56, 7, E, D);
        const detected_layers d = detect_layers_data_free(c->m);
        CHECK(d.explosion_layers == std::vector<std::int64_t>{E});
        CHECK(d.decay_layers == std::vector<std::int64_t>{D});
        REQUIRE(d.direction.size() == c->m.config.hidden_size);
        CHECK(acute_angle_degrees(d.direction, c->p.truth.direction) < 1.0);

        const std::vector<int> toks{static_cast<int>(c->m.config.bos_token), 20, 21, delimiter(*c), 22, 23};
        layer_analysis_options lo;
        lo.k = 1;
        const VectorXd v1 = ffn_right_singular_vectors(c->m, E, lo).v.col(0);
        const ablation_result a = ablate_direction(c->m, toks, E, v1, 4);
        CHECK(a.plain.norms.maxCoeff() > 0.5 * c->p.truth.explosion_norm);
        CHECK(a.ablated.norms.maxCoeff() < 0.01 * c->p.truth.explosion_norm);
        CHECK(a.plain_continuation.size() == 4);

        empirical_result e;
        {
            std::size_t n = 0;
            const std::vector<std::vector<int>> corpus{toks, {20, delimiter(*c), 30}, {31, 32, 33, delimiter(*c)}};
            e = empirical_high_norm_direction(c->m, [&]() -> std::optional<std::vector<int>> {
                if (n == corpus.size()) return std::nullopt;
                return corpus[n++];
            });
        }
        const detected_layers dc = detect_layers_from_counts(e);
        CHECK(dc.explosion_layers == std::vector<std::int64_t>{E});
        CHECK(dc.decay_layers == std::vector<std::int64_t>{D});

        const MatrixXd u = layer_wise_directions(c->m);
        CHECK(corresponding_angles(u, u).maxCoeff() < 1e-6);
        CHECK(acute_angle_degrees(u.col(E - 1), c->p.truth.direction) < 1.0);
    }
}
