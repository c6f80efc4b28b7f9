"""The ``mnist-softmax`` commands' thin mains: parse arguments, call the library, print."""
