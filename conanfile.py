import os

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy
from conan.tools.layout import basic_layout

required_conan_version = ">=1.54.0"


class SdlensConan(ConanFile):
    name = "sdlens"
    version = "0.1.0"
    description = "Find, explain and use the singular defects (high-norm tokens) of large language models"
    license = "MIT"
    topics = ("llm", "interpretability", "header-only", "eigen", "transformer")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    no_copy_source = True
    exports_sources = "include/*", "LICENSE"

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        self.requires("eigen/3.4.0")
        self.requires("spectra/1.0.1")
        self.requires("xtensor/0.24.7")
        self.requires("nlohmann_json/3.11.3")

    def package_id(self):
        self.info.clear()

    def validate(self):
        if self.settings.compiler.get_safe("cppstd"):
            check_min_cppstd(self, 17)

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"),
             os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "sdlens")
        self.cpp_info.set_property("cmake_target_name", "sdlens::sdlens")
        self.cpp_info.requires = ["eigen::eigen", "spectra::spectra", "xtensor::xtensor",
                                  "nlohmann_json::nlohmann_json"]
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["m"]
