// A consumer of the installed package: includes the umbrella header, writes a small random model,
// reads it back, runs a forward pass and the layer-wise singular defect direction of one layer.
// Built twice by the project's package test: against sdlens::sdlens (header-only: the heavy entry
// points compile here) and against sdlens::sdlens_compiled (they come from the library).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include <unistd.h>

#include <sdlens/sdlens.hpp>

int main()
{
    // bf16 rounding of 1 + 2^-8 is 1 (ties to even), a fact the library's conversions must keep.
    const float back = sdlens::bf16_to_float(sdlens::float_to_bf16(1.0f + 1.0f / 256));
    if (back != 1.0f) return 1;

    const auto dir = std::filesystem::temp_directory_path() / ("sdlens-test-package-" + std::to_string(::getpid()));
    const sdlens::model_config config = sdlens::small_config(sdlens::model_family::llama);
    sdlens::write_hf_checkpoint(dir.string(), config, sdlens::random_weights(config, 7), sdlens::dtype::f32);
    int failures = 0;
    {
        const sdlens::model m = sdlens::load_model(dir.string());
        const sdlens::forward_result r = sdlens::forward(m, {1, 5, 9, 13});
        for (Eigen::Index i = 0; i < r.logits.size(); ++i) failures += !std::isfinite(r.logits.data()[i]);

        sdlens::layer_analysis_options o;
        o.k = 2;
        const auto t = sdlens::layer_singular_triplets(m, 1, o);
        // Converged triplets: ||L v - s u|| and ||L^T u - s v|| within the solver's 1e-10 s_1.
        failures += !(t.sigma[0] >= t.sigma[1] && t.sigma[1] > 0 && t.residuals.maxCoeff() < 1e-8 * t.sigma[0]);
        std::printf("sdlens %s (%s): logits of %ld tokens, layer 1 sigma_1 = %.6f\n", SDLENS_VERSION_STRING,
#if defined(SDLENS_COMPILED)
                    "compiled",
#else
                    "header-only",
#endif
                    static_cast<long>(r.logits.rows()), t.sigma[0]);
    }
    std::filesystem::remove_all(dir);
    return failures == 0 ? 0 : 1;
}
