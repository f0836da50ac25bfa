# Shell helpers the program tests source: .npy files of token ids, as numpy.save writes them.

# write_npy FILE DESCR SHAPE PACK_FORMAT VALUES...: a .npy v1.0 as numpy.save writes it.
write_npy() {
  perl -e '
    my ($file, $descr, $shape, $format, @values) = @ARGV;
    my $dict = "{'"'"'descr'"'"': '"'"'$descr'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': $shape, }";
    my $padded = int((10 + length($dict) + 1 + 63) / 64) * 64 - 10;
    $dict .= " " x ($padded - length($dict) - 1) . "\n";
    open(my $out, ">:raw", $file) or die "$file: $!";
    print $out "\x93NUMPY\x01\x00", pack("v", length($dict)), $dict, pack("$format*", @values);
  ' "$@"
}

# tokens FILE ROWS COLUMNS VOCAB: int32 ids [ROWS, COLUMNS], a fixed pseudo-random pattern.
tokens() {
  local ids=() i
  for ((i = 0; i < $2 * $3; i++)); do ids+=($(((i * 7919 + 13 * (i / $3) + 5) % $4))); done
  write_npy "$1" "<i4" "($2, $3)" "l<" "${ids[@]}"
}
