import os

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeToolchain, cmake_layout
from conan.tools.files import copy
from conan.tools.layout import basic_layout

required_conan_version = ">=1.54.0"


class SdlensConan(ConanFile):
    name = "sdlens"
    version = "0.1.0"
    description = "Find, explain and use the singular defects (high-norm tokens) of large language models"
    license = "MIT"
    topics = ("llm", "interpretability", "header-only", "eigen", "transformer")
    settings = "os", "arch", "compiler", "build_type"
    # compiled=True also builds and packages sdlens::sdlens_compiled, the heavy entry points
    # compiled once (include/sdlens/core/compiled.hpp); header-only is the default.
    options = {"compiled": [True, False]}
    default_options = {"compiled": False}
    exports_sources = "include/*", "src/*", "cmake/*", "CMakeLists.txt", "LICENSE"

    @property
    def _header_only(self):
        return not self.options.compiled

    def configure(self):
        self.package_type = "header-library" if self._header_only else "static-library"

    def layout(self):
        if self._header_only:
            basic_layout(self, src_folder=".")
        else:
            cmake_layout(self, src_folder=".")

    def requirements(self):
        self.requires("eigen/3.4.0")
        self.requires("spectra/1.0.1")
        self.requires("xtensor/0.24.7")
        self.requires("nlohmann_json/3.11.3")

    def package_id(self):
        if self._header_only:
            self.info.clear()

    def validate(self):
        if self.settings.compiler.get_safe("cppstd"):
            check_min_cppstd(self, 17)

    def generate(self):
        if self._header_only:
            return
        tc = CMakeToolchain(self)
        tc.variables["SDLENS_BUILD_COMPILED"] = True
        tc.variables["SDLENS_INSTALL"] = True
        for off in ("TESTS", "EXAMPLES", "BENCHMARKS"):
            tc.variables["SDLENS_BUILD_" + off] = False
        tc.variables["SDLENS_USE_CCACHE"] = False
        tc.generate()

    def build(self):
        if self._header_only:
            return
        cmake = CMake(self)
        cmake.configure()
        cmake.build(target="sdlens_compiled")

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"),
             os.path.join(self.package_folder, "include"))
        if not self._header_only:
            copy(self, "*.a", self.build_folder, os.path.join(self.package_folder, "lib"), keep_path=False)
            copy(self, "*.lib", self.build_folder, os.path.join(self.package_folder, "lib"), keep_path=False)

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "sdlens")
        requires = ["eigen::eigen", "spectra::spectra", "xtensor::xtensor", "nlohmann_json::nlohmann_json"]
        headers = self.cpp_info.components["headers"]
        headers.set_property("cmake_target_name", "sdlens::sdlens")
        headers.bindirs = []
        headers.libdirs = []
        headers.requires = requires
        if self.settings.os in ("Linux", "FreeBSD"):
            headers.system_libs = ["m"]
        if not self._header_only:
            compiled = self.cpp_info.components["compiled"]
            compiled.set_property("cmake_target_name", "sdlens::sdlens_compiled")
            compiled.libs = ["sdlens_compiled"]
            compiled.defines = ["SDLENS_COMPILED"]
            compiled.requires = ["headers"]
