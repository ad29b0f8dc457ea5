import Foundation
import SmolWeights
import SmolJinja

extension PretrainedModel {
    public func chat() throws -> ChatTemplate {
        guard let t = chatTemplate else { throw HubError.invalid(path: source, reason: "the model has no chat template") }
        return try ChatTemplate(t, bosToken: bosToken, eosToken: eosToken)
    }

    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        try chat().render(messages, addGenerationPrompt: addGenerationPrompt)
    }
}
