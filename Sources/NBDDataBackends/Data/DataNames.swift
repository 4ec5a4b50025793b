/// The `\NAME`s bound in a scope of a data string. A name is evaluated with the names that were
/// visible where it was bound, as nbdkit does, so a name cannot refer to itself.
struct Names {
    /// One binding: the expression and the names visible when it was bound.
    final class Binding {
        let expression: DataExpression
        let names: Names

        init(_ expression: DataExpression, names: Names) {
            self.expression = expression
            self.names = names
        }
    }

    private var table: [String: Binding] = [:]

    /// Binds `name` for the rest of this scope and the scopes nested in it.
    mutating func bind(_ name: String, to expression: DataExpression) {
        table[name] = Binding(expression, names: self)
    }

    /// The expression bound to `name` and the names it sees.
    func lookup(_ name: String) -> (DataExpression, Names)? {
        table[name].map { ($0.expression, $0.names) }
    }
}
