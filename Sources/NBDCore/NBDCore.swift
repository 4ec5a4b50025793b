// NBDCore: the contracts of swift-nbd-middleware. See NBDCore.docc for the getting-started article.
