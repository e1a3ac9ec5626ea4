// fmt's compiled part, built into zt_base. Debian ships fmt as a shared library only, and
// header-only mode makes every file that formats compile fmt's whole formatting engine (several
// seconds per file, and the project has ~150 of them). So every file uses fmt in its ordinary
// compiled mode, and this one file supplies what libfmt would: including format-inl.h without
// FMT_HEADER_ONLY defines fmt's non-template functions here, and below are the template
// instantiations that fmt's headers declare but leave to the library (format.h declares them
// `extern`; the linker names any that is missing).
#include <locale>

#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {

template locale_ref::locale_ref(const std::locale&);
template std::locale locale_ref::get<std::locale>() const;

template auto dragonbox::to_decimal<float>(float) noexcept -> dragonbox::decimal_fp<float>;
template auto dragonbox::to_decimal<double>(double) noexcept -> dragonbox::decimal_fp<double>;

template auto thousands_sep_impl<char>(locale_ref) -> thousands_sep_result<char>;
template auto thousands_sep_impl<wchar_t>(locale_ref) -> thousands_sep_result<wchar_t>;
template auto decimal_point_impl<char>(locale_ref) -> char;
template auto decimal_point_impl<wchar_t>(locale_ref) -> wchar_t;

}  // namespace detail
FMT_END_NAMESPACE
