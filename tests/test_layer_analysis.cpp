// The per-layer analyses (Lanczos singular triplets of L and F, Arnoldi eigenpairs of R, the
// eigenvector best aligned to a direction) against Eigen's dense decompositions of the dense
// float64 reference maps, on random layers of several families, on stories260K and through the CLI.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <fstream>
#include <vector>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include <sdlens/analysis/layer_directions.hpp>
#include <sdlens/model/hf_writer.hpp>
#include <sdlens/model/load.hpp>
#include <sdlens/model/random_model.hpp>

#include "dense_reference.hpp"
#include "linearize_support.hpp"
#include "support.hpp"

using namespace sdlens;
using namespace sdlens::test;

TEST_CASE("Lanczos singular triplets of L match Eigen's JacobiSVD on the dense L")
{
    for (model_family family : {model_family::llama, model_family::gpt2, model_family::falcon}) {
        const std::string fam = family_name(family);
        CAPTURE(fam);
        const auto b = make_model(family, 128, 256, 8, family == model_family::llama ? 2 : 8, dtype::bf16, 31);
        const linearized_layer<double> lin(b.m.config, b.m.layers[0]);
        const auto ref = reference(b.m, 0, lin.row_scales());
        const auto svd = test::reference_svd(ref.l);
        const VectorXd s = svd.sigma;
        REQUIRE(s[0] - s[1] > 1e-3 * s[0]);  // u_1, v_1 well defined (angle error ~ residual / gap)
        const layer_map_operator<double> op(lin, layer_map::layer);
        lanczos_svd<layer_map_operator<double>> solver(op, 3);
        solver.compute();
        REQUIRE(solver.info() == Spectra::CompInfo::Successful);
        // Residuals at tol 1e-10 sigma_1 give sigma to ~1e-10 and vectors to ~1e-10 / gap rad.
        for (int i = 0; i < 3; ++i) CHECK(solver.singular_values()[i] == doctest::Approx(s[i]).epsilon(1e-6));
        CHECK(acute_angle_degrees(solver.left_singular_vectors().col(0), svd.u.col(0)) < 0.01);
        CHECK(acute_angle_degrees(solver.right_singular_vectors().col(0), svd.v.col(0)) < 0.01);
        CHECK(solver.residuals().maxCoeff() < 1e-8 * s[0]);
        // The analysis wrapper reports the same, with u columns unit length.
        layer_analysis_options ao;
        ao.k = 2;
        const auto r = layer_singular_triplets(b.m, 1, ao);
        CHECK(r.layer == 1);
        CHECK(r.sigma[0] == doctest::Approx(s[0]).epsilon(1e-6));
        CHECK(acute_angle_degrees(r.u.col(0), svd.u.col(0)) < 0.01);
        // F's right singular vectors (the explosion subspace) against JacobiSVD of the dense F.
        const auto fsvd = test::reference_svd(ref.f);
        const auto fr = ffn_right_singular_vectors(b.m, 1, ao);
        CHECK(fr.sigma[0] == doctest::Approx(fsvd.sigma[0]).epsilon(1e-6));
        if (fsvd.sigma[0] - fsvd.sigma[1] > 1e-3 * fsvd.sigma[0])
            CHECK(acute_angle_degrees(fr.v.col(0), fsvd.v.col(0)) < 0.01);
    }
}

TEST_CASE("Arnoldi eigenvalues of R match Eigen's EigenSolver on the dense R")
{
    for (model_family family : {model_family::llama, model_family::neox}) {
        const std::string fam = family_name(family);
        CAPTURE(fam);
        const auto b = make_model(family, 96, 192, 4, family == model_family::llama ? 2 : 4, dtype::f32, 41);
        const linearized_layer<double> lin(b.m.config, b.m.layers[0]);
        const auto ref = reference(b.m, 0, lin.row_scales());
        const auto es = test::reference_eig(ref.r);
        std::vector<std::complex<double>> want(es.values.data(), es.values.data() + es.values.size());
        std::sort(want.begin(), want.end(), [](auto x, auto y) { return std::abs(x) > std::abs(y); });
        const std::int64_t k = 6;
        const layer_map_operator<double> op(lin, layer_map::residual);
        const auto got = top_eigenpairs(op, k);
        REQUIRE(got.values.size() == k);
        const double scale = std::abs(want[0]);
        for (std::int64_t i = 0; i < k; ++i) {
            // Each computed eigenvalue is one of the reference's top-magnitude ones (tol 1e-10 in
            // Spectra gives ~1e-10 relative; 1e-8 allows conditioning of a non-normal matrix).
            double nearest = 1e300;
            for (const auto& w : want) nearest = std::min(nearest, std::abs(w - got.values[i]));
            CHECK(nearest < 1e-8 * scale);
            CHECK(std::abs(got.values[i]) >= std::abs(want[static_cast<std::size_t>(k)]) - 1e-8 * scale);
            // And an eigenvector: R x = lambda x.
            const Eigen::VectorXcd x = got.vectors.col(i);
            CHECK((ref.r.cast<std::complex<double>>() * x - got.values[i] * x).norm() < 1e-8 * scale);
        }
        // Best aligned to the real part of one of the eigenvectors: angle ~0 and that eigenvalue.
        layer_analysis_options ao;
        ao.k = k;
        Eigen::MatrixXcd vecs = got.vectors;
        normalize_phases(vecs);
        const VectorXd target = vecs.col(2).real();
        const auto e = layer_eigen_analysis(b.m, 1, target, ao);
        CHECK(e.best.angle_degrees < 1e-4);
        // A complex pair's two eigenvectors share their real part: either member may be chosen.
        CHECK(std::abs(e.best.eigenvalue.real() - got.values[2].real()) < 1e-8 * scale);
        CHECK(std::abs(std::abs(e.best.eigenvalue.imag()) - std::abs(got.values[2].imag())) < 1e-8 * scale);
        CHECK_THROWS_AS(layer_eigen_analysis(b.m, 1, VectorXd::Ones(5), ao), input_error);
        CHECK_THROWS_AS(layer_eigen_analysis(b.m, 2, target, ao), input_error);
    }
}

TEST_CASE("layer analyses are deterministic: two runs bit-identical")
{
    const auto b = make_model(model_family::llama, 64, 128, 4, 2, dtype::bf16, 51);
    layer_analysis_options o;
    o.k = 3;
    const auto r1 = layer_singular_triplets(b.m, 1, o), r2 = layer_singular_triplets(b.m, 1, o);
    CHECK(std::memcmp(r1.u.data(), r2.u.data(), sizeof(double) * r1.u.size()) == 0);
    CHECK(std::memcmp(r1.sigma.data(), r2.sigma.data(), sizeof(double) * r1.sigma.size()) == 0);
    const auto e1 = layer_eigen_analysis(b.m, 1, r1.u.col(0), o), e2 = layer_eigen_analysis(b.m, 1, r1.u.col(0), o);
    CHECK(std::memcmp(e1.eigenvalues.data(), e2.eigenvalues.data(), sizeof(std::complex<double>) * e1.eigenvalues.size()) == 0);
}

TEST_CASE("layer lists and direction files")
{
    CHECK(parse_layer_ranges("1-3,8,2", 10) == std::vector<std::int64_t>{1, 2, 3, 8});
    CHECK(parse_layer_ranges("", 3) == std::vector<std::int64_t>{1, 2, 3});
    for (const char* bad : {"0", "11", "3-1", "a", "1,,2", "1-", "-2", "1,"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(parse_layer_ranges(bad, 10), input_error);
    }
    test::temp_dir tmp;
    auto write = [&](const std::string& name, const std::string& text) {
        std::ofstream(tmp / name) << text;
        return (tmp / name).string();
    };
    CHECK(read_direction_file(write("a.json", "[1, 2, 3]")) == VectorXd::LinSpaced(3, 1, 3));
    CHECK(read_direction_file(write("b.json", R"({"direction": [0, 1], "layer": 2})")) == (VectorXd(2) << 0, 1).finished());
    for (const char* bad : {"[]", "{\"x\": [1]}", "[1, \"a\"]", "not json", "[0, 0]"})
        CHECK_THROWS_AS(read_direction_file(write("bad.json", bad)), input_error);
    CHECK_THROWS_AS(read_direction_file((tmp / "missing.json").string()), input_error);
}

TEST_CASE("stories260K: Lanczos directions and Arnoldi eigenvalues of every layer match dense Eigen")
{
    auto dir = sdlens::test::stories260k();
    if (!dir) return;
    const model m = load_model((*dir / "stories260K.bin").string());
    layer_analysis_options o;
    o.k = 3;
    o.eig_k = 4;
    for (std::int64_t l = 1; l <= static_cast<std::int64_t>(m.layers.size()); ++l) {
        CAPTURE(l);
        const linearized_layer<double> lin(m.config, m.layers[static_cast<std::size_t>(l - 1)]);
        const auto ref = reference(m, l - 1, lin.row_scales());
        const auto svd = test::reference_svd(ref.l);
        const auto r = layer_singular_triplets(m, l, o);
        // Tolerances as in the random-layer case: residual 1e-10 sigma_1.
        for (int i = 0; i < 3; ++i) CHECK(r.sigma[i] == doctest::Approx(svd.sigma[i]).epsilon(1e-6));
        if (svd.sigma[0] - svd.sigma[1] > 1e-3 * svd.sigma[0]) {
            CHECK(acute_angle_degrees(r.u.col(0), svd.u.col(0)) < 0.01);
            CHECK(acute_angle_degrees(r.v.col(0), svd.v.col(0)) < 0.01);
        }
        const auto es = test::reference_eig(ref.r);
        const auto e = layer_eigen_analysis(m, l, r.u.col(0), o);
        const double scale = es.values.cwiseAbs().maxCoeff();
        for (Eigen::Index i = 0; i < e.eigenvalues.size(); ++i) {
            double nearest = 1e300;
            for (Eigen::Index j = 0; j < es.values.size(); ++j)
                nearest = std::min(nearest, std::abs(es.values[j] - e.eigenvalues[i]));
            CHECK(nearest < 1e-8 * scale);
        }
    }
}

#ifdef SDLENS_CLI
TEST_CASE("sdlens directions and eig on a written model")
{
    test::temp_dir tmp;
    const model_config c = small_config(model_family::llama);
    const std::string dir = (tmp / "m").string();
    write_hf_checkpoint(dir, c, random_weights(c, 8), dtype::f32);
    const model m = load_model(dir);
    const linearized_layer<double> lin(m.config, m.layers[1]);
    const auto ref = reference(m, 1, lin.row_scales());
    const auto svd = test::reference_svd(ref.l);

    auto r = test::run_cli("directions \"" + dir + "\" --k 3 --layers 2 --vectors --json");
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["layers"].size() == 1);
    const auto& l2 = j["layers"][0];
    CHECK(l2["layer"] == 2);
    const auto sigma = l2["sigma"].get<std::vector<double>>();
    REQUIRE(sigma.size() == 3);
    for (int i = 0; i < 3; ++i) CHECK(sigma[static_cast<std::size_t>(i)] == doctest::Approx(svd.sigma[i]).epsilon(1e-6));
    const auto u = l2["u"].get<std::vector<double>>();
    CHECK(acute_angle_degrees(Eigen::Map<const VectorXd>(u.data(), 64), svd.u.col(0)) < 0.01);
    CHECK(l2.contains("applications"));

    // Float operators: residuals within 1e-5 sigma_1 bound sigma's error by ~1e-5 sigma_1 (and,
    // being quadratic in the residual for a converged triplet, much less) and u_1's angle by
    // 1e-5 / (relative gap) rad; the gap here exceeds 1%, so 1e-3 rad = 0.06 degrees.
    r = test::run_cli("directions \"" + dir + "\" --k 3 --layers 2 --vectors --json --precision float");
    REQUIRE(r.exit_code == 0);
    const auto jf = nlohmann::json::parse(r.out);
    CHECK(jf["precision"] == "float");
    const auto sf = jf["layers"][0]["sigma"].get<std::vector<double>>();
    for (int i = 0; i < 3; ++i) CHECK(sf[static_cast<std::size_t>(i)] == doctest::Approx(svd.sigma[i]).epsilon(1e-5));
    REQUIRE((svd.sigma[0] - svd.sigma[1]) > 0.01 * svd.sigma[0]);
    const auto uf = jf["layers"][0]["u"].get<std::vector<double>>();
    CHECK(acute_angle_degrees(Eigen::Map<const VectorXd>(uf.data(), 64), svd.u.col(0)) < 0.06);
    CHECK(test::run_cli("directions \"" + dir + "\" --precision half").exit_code == 2);

    r = test::run_cli("directions \"" + dir + "\" --layers 1-2");  // text table
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("sigma_1") != std::string::npos);

    r = test::run_cli("eig \"" + dir + "\" --k 4 --json");
    REQUIRE(r.exit_code == 0);
    auto e = nlohmann::json::parse(r.out);
    CHECK(e["aligned_to"] == "u1");
    REQUIRE(e["layers"].size() == 2);
    CHECK(e["layers"][1]["eigenvalues"].size() == 4);
    CHECK(e["layers"][1]["best_aligned"].contains("angle_deg"));

    // A direction file: the real part of one of R's eigenvectors is found at angle ~0.
    const auto es = test::reference_eig(ref.r);
    Eigen::Index top = 0;
    es.values.cwiseAbs().maxCoeff(&top);
    Eigen::MatrixXcd v = es.vectors.col(top);
    normalize_phases(v);
    const VectorXd target = v.col(0).real();
    std::ofstream(tmp / "dir.json") << nlohmann::json{{"direction", std::vector<double>(target.data(), target.data() + 64)}}.dump();
    r = test::run_cli("eig \"" + dir + "\" --k 4 --layers 2 --json --direction \"" + (tmp / "dir.json").string() + "\"");
    REQUIRE(r.exit_code == 0);
    e = nlohmann::json::parse(r.out);
    CHECK(e["layers"][0]["best_aligned"]["angle_deg"].get<double>() < 1e-4);
    CHECK(e["layers"][0]["best_aligned"]["eigenvalue"].get<double>() == doctest::Approx(es.values[top].real()).epsilon(1e-8));

    // Bad input: exit 2 with one line naming the problem.
    std::ofstream(tmp / "short.json") << "[1, 2, 3]";
    r = test::run_cli("eig \"" + dir + "\" --direction \"" + (tmp / "short.json").string() + "\"");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("hidden size") != std::string::npos);
    r = test::run_cli("directions \"" + dir + "\" --layers 3");
    CHECK(r.exit_code == 2);
    r = test::run_cli("directions \"" + dir + "\" --layers 2-x");
    CHECK(r.exit_code == 2);
}
#endif
