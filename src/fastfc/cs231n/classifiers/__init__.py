"""The course's classifiers: fc_net (TwoLayerNet, FullyConnectedNet) and cnn
(ThreeLayerConvNet), as fastfc.models networks with the course's
initialization, regularization and conventions."""
