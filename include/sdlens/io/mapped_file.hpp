#pragma once
// Read-only memory mapping of a whole file: opening a checkpoint costs nothing until its bytes
// are touched, and the kernel pages weights in and out so models larger than memory still work.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdlens/core/error.hpp"

namespace sdlens {

class mapped_file {
public:
    explicit mapped_file(const std::string& path) : path_(path)
    {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail_input(path, std::string("cannot open: ") + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            fail_input(path, "not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                ::close(fd);
                fail_input(path, std::string("cannot map: ") + std::strerror(errno));
            }
            data_ = static_cast<const std::byte*>(p);
        }
        ::close(fd);
    }
    ~mapped_file()
    {
        if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    }
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;

    const std::byte* data() const { return data_; }
    std::size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

// Asks the kernel to take the whole pages of [p, p + n) out of this process's resident memory
// (MADV_PAGEOUT, Linux 5.4+). Clean pages of a file mapping are dropped and read again from the
// file if touched; other memory is at most swapped out, never lost, so this is safe on any bytes.
// Returns false when the kernel declines (older kernels, other systems): only a hint.
inline bool release_pages(const std::byte* p, std::size_t n)
{
#ifdef MADV_PAGEOUT
    const long page_size = ::sysconf(_SC_PAGESIZE);
    if (page_size <= 0 || p == nullptr) return false;
    const auto page = static_cast<std::uintptr_t>(page_size);
    const auto begin = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
    const auto end = (reinterpret_cast<std::uintptr_t>(p) + n) / page * page;
    if (end <= begin) return true;
    return ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT) == 0;
#else
    (void)p;
    (void)n;
    return false;
#endif
}

// A bounds-checked cursor over bytes: every parser reads through it, so a length field that
// points past the end becomes an input_error naming the file, never a read out of bounds.
class byte_reader {
public:
    byte_reader(const std::byte* data, std::size_t size, std::string source)
        : data_(data), size_(size), source_(std::move(source)) {}

    std::size_t pos() const { return pos_; }
    std::size_t size() const { return size_; }
    std::size_t remaining() const { return size_ - pos_; }
    const std::string& source() const { return source_; }

    void need(std::size_t n, const char* what) const
    {
        if (n > remaining())
            fail_input(source_, std::string("truncated: ") + what + " needs " + std::to_string(n) +
                                    " bytes at offset " + std::to_string(pos_) + ", file has " +
                                    std::to_string(remaining()) + " left");
    }
    template <class T>
    T read(const char* what)
    {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    const std::byte* take(std::size_t n, const char* what)
    {
        need(n, what);
        const std::byte* p = data_ + pos_;
        pos_ += n;
        return p;
    }
    void seek(std::size_t p, const char* what)
    {
        if (p > size_) fail_input(source_, std::string("offset of ") + what + " is beyond the end of the file");
        pos_ = p;
    }

private:
    const std::byte* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
    std::string source_;
};

}  // namespace sdlens
