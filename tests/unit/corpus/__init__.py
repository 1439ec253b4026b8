"""Raw request corpora for the parser tests (``parser_corpus``) and how to feed them."""
