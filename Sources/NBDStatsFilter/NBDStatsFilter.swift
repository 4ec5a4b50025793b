import NBDCore
