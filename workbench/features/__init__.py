"""Stage 3, features: what SAE features and the residual stream say, observed without editing the
model. Captures of feature activations over scenarios and text, stored sparsely and cached
(``capture``); a feature's evidence in whole conversations (``evidence``); features ranked by how
well they separate two conditions (``contrast``); supervised linear probes (``probes``); explanations of a
feature written from whole conversations or short windows and scored by detection and fuzzing, kept in a JSON
store (``explanations``)."""
