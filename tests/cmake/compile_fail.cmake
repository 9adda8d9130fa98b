# Compile-failure pairs for sequential and the layer specs; see
# cmake/advganCompileFail.cmake for what each pair checks.
include(advganCompileFail)

advgan_compile_fail(NAME conv2d_kernel_exceeds_input
  SOURCE conv2d_kernel_exceeds_input.cpp
  TWIN conv2d_kernel_fits_input.cpp
  REGEX "advgan: layer does not fit its input shape"
        "check_layer_fits<0, advgan::conv2d<4, 5, 1, 0(, true)?>, advgan::shape<1, 3, 3>, false>")

advgan_compile_fail(NAME sequential_element_not_a_layer
  SOURCE sequential_element_not_a_layer.cpp
  TWIN sequential_element_is_a_layer.cpp
  REGEX "advgan: every element of sequential after input<...> must be a layer spec"
        "check_is_layer<0, int, false>")

advgan_compile_fail(NAME reshape_changes_element_count
  SOURCE reshape_changes_element_count.cpp
  TWIN reshape_keeps_element_count.cpp
  REGEX "advgan: layer does not fit its input shape"
        "check_layer_fits<1, advgan::reshape<4, 2, 2>, advgan::shape<2, 3, 3>, false>")

advgan_compile_fail(NAME conv_transpose2d_output_padding_not_below_stride
  SOURCE conv_transpose2d_output_padding_not_below_stride.cpp
  TWIN conv_transpose2d_output_padding_below_stride.cpp
  REGEX "advgan: conv_transpose2d output_padding must be smaller than stride"
        "advgan::conv_transpose2d<4, 4, 2, 1, 2(, true)?>")
