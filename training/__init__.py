"""Desktop training: datasets, preprocessing, CNN / LSTM / GRU / DNN models, evaluation."""
